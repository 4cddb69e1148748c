package uplink

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/wire"
)

// artifactStall is how long an artifact download may wait for its next
// chunk (128 KiB: 16 s at 64 kbit/s) before it is abandoned; the next
// heartbeat round starts it again.
const artifactStall = time.Minute

// maxArtifactRetry caps the wait before an artifact that failed is tried
// again; the wait starts at the heartbeat interval and doubles.
const maxArtifactRetry = 5 * time.Minute

// fetchLoop copies the artifacts the node is missing from the hub's object
// store each time the sync loop asks, until ctx is done. Over a 64 kbit/s
// link a module takes minutes, and heartbeats, plans, commands and events
// must not wait for it: the fetch runs beside the sync loop, on a
// connection of its own (on one connection a heartbeat reply would queue
// behind every chunk the hub has sent), open only while it downloads. An
// artifact that failed (its bytes do not match its reference, say) waits
// before it is tried again, longer each time, rather than at every round.
func (u *Uplink) fetchLoop(ctx context.Context) {
	type retry struct {
		at   time.Time
		wait time.Duration
	}
	failed := map[string]retry{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.fetch:
		}
		now := time.Now()
		var due []string
		for _, ref := range u.cfg.Node.MissingArtifacts() {
			if r, ok := failed[ref]; !ok || !now.Before(r.at) {
				due = append(due, ref)
			}
		}
		if len(due) == 0 {
			continue
		}
		errs := u.fetchArtifacts(ctx, due)
		if ctx.Err() != nil {
			return
		}
		for _, ref := range due {
			err, bad := errs[ref]
			if !bad {
				delete(failed, ref)
				continue
			}
			wait := min(max(2*failed[ref].wait, u.cfg.Heartbeat), maxArtifactRetry)
			failed[ref] = retry{at: time.Now().Add(wait), wait: wait}
			u.cfg.Logger.Warn("fetch artifact", "ref", ref, "err", err, "retry in", wait)
		}
	}
}

// fetchArtifacts downloads refs over a new connection and returns the
// error of each that failed. One artifact that fails does not hold back
// the others; a broken connection ends the downloads at once.
func (u *Uplink) fetchArtifacts(ctx context.Context, refs []string) map[string]error {
	errs := map[string]error{}
	failAll := func(err error) map[string]error {
		for _, ref := range refs {
			errs[ref] = err
		}
		return errs
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nc, err := nats.Connect(u.cfg.URL, append(u.dialOptions("-artifacts"),
		nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { cancel() }))...)
	if err != nil {
		return failAll(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return failAll(err)
	}
	for _, ref := range refs {
		if ctx.Err() != nil {
			errs[ref] = ctx.Err()
			continue
		}
		if err := u.fetchArtifact(ctx, js, ref); err != nil {
			errs[ref] = err
		}
	}
	return errs
}

// fetchArtifact downloads one artifact from the object store's stream
// into the node's cache, one chunk at a time, so it never has more than one
// chunk in flight and notices a stalled link after artifactStall. Each
// chunk is kept as it arrives with the stream sequence it came with: a
// download that a cut link or a restart interrupted resumes after its last
// chunk. The cache verifies the digest once all chunks are there.
func (u *Uplink) fetchArtifact(ctx context.Context, js jetstream.JetStream, ref string) error {
	rctx, cancel := context.WithTimeout(ctx, u.cfg.RequestTimeout)
	defer cancel()
	store, err := js.ObjectStore(rctx, wire.ArtifactStore)
	if err != nil {
		return fmt.Errorf("open artifact store: %w", err)
	}
	info, err := store.GetInfo(rctx, ref)
	if err != nil {
		return err
	}
	dl, err := u.cfg.Node.ResumeArtifact(ref)
	if err != nil {
		return err
	}
	defer dl.Close()
	cur, ok := parseChunkCursor(dl.Cursor())
	if !ok || cur.nuid != info.NUID {
		// New, or the object was uploaded again: its chunks are new.
		if err := dl.Restart(); err != nil {
			return err
		}
		cur = chunkCursor{nuid: info.NUID}
	}
	// The object store's layout (NATS ADR-20): the chunks of an object
	// are the messages on $O.<bucket>.C.<nuid> in stream OBJ_<bucket>. A
	// plain ephemeral consumer from the cursor on, without acks: each
	// Fetch gets the next chunk, and the hub drops the consumer once no
	// one pulls (an ordered consumer would be recreated on every Fetch,
	// and retries that forever on a closed connection).
	cfg := jetstream.ConsumerConfig{
		FilterSubject:     "$O." + wire.ArtifactStore + ".C." + info.NUID,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: 2 * artifactStall,
	}
	if cur.chunks > 0 {
		u.cfg.Logger.Info("resuming artifact download", "ref", ref, "bytes", dl.Size(), "of", info.Size)
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, cur.seq+1
	}
	cons, err := js.CreateConsumer(rctx, "OBJ_"+wire.ArtifactStore, cfg)
	if err != nil {
		return err
	}
	for cur.chunks < info.Chunks {
		if err := fetchChunk(ctx, cons, dl, &cur); err != nil {
			return fmt.Errorf("chunk %d of %d: %w", cur.chunks+1, info.Chunks, err)
		}
	}
	return dl.Commit()
}

// fetchChunk appends the next chunk from cons to dl and advances cur.
func fetchChunk(ctx context.Context, cons jetstream.Consumer, dl Download, cur *chunkCursor) error {
	ctx, cancel := context.WithTimeout(ctx, artifactStall)
	defer cancel()
	batch, err := cons.Fetch(1, jetstream.FetchContext(ctx))
	if err != nil {
		return err
	}
	got := false
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		cur.seq, cur.chunks = meta.Sequence.Stream, cur.chunks+1
		if err := dl.Append(m.Data(), cur.String()); err != nil {
			return err
		}
		got = true
	}
	if err := batch.Error(); err != nil {
		return err
	}
	if !got {
		return fmt.Errorf("none within %v", artifactStall)
	}
	return nil
}

// chunkCursor is where a download stands in the object store: the
// object's NUID, the stream sequence of its last chunk, and the count.
type chunkCursor struct {
	nuid   string
	seq    uint64
	chunks uint32
}

func (c chunkCursor) String() string { return fmt.Sprintf("%s %d %d", c.nuid, c.seq, c.chunks) }

func parseChunkCursor(s string) (chunkCursor, bool) {
	var c chunkCursor
	n, err := fmt.Sscanf(s, "%s %d %d", &c.nuid, &c.seq, &c.chunks)
	return c, err == nil && n == 3
}
