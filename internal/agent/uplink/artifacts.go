package uplink

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/wire"
)

// artifactStall is how long an artifact download may wait for its next
// chunk (128 KiB: 16 s at 64 kbit/s) before it is abandoned; the next
// heartbeat round starts it again.
const artifactStall = time.Minute

// fetchLoop copies the artifacts the node is missing from the hub's object
// store each time the sync loop asks, until ctx is done. Over a 64 kbit/s
// link a module takes minutes, and heartbeats, plans, commands and events
// must not wait for it: the fetch runs beside the sync loop, on a
// connection of its own (on one connection a heartbeat reply would queue
// behind every chunk the hub has sent), open only while it downloads.
func (u *Uplink) fetchLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.fetch:
		}
		if missing := u.cfg.Node.MissingArtifacts(); len(missing) > 0 {
			if err := u.fetchArtifacts(ctx, missing); err != nil && ctx.Err() == nil {
				u.cfg.Logger.Warn("fetch artifacts", "err", err)
			}
		}
	}
}

// fetchArtifacts downloads refs over a new connection; the next heartbeat
// round retries what failed. A broken connection ends the download at once.
func (u *Uplink) fetchArtifacts(ctx context.Context, refs []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nc, err := nats.Connect(u.cfg.URL, nats.Name("atoll-agent-"+u.name+"-artifacts"),
		nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { cancel() }))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for _, ref := range refs {
		if err := u.fetchArtifact(ctx, js, ref); err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
	}
	return nil
}

// fetchArtifact streams one artifact's chunks from the object store's
// stream into the node's cache, which verifies the digest as it stores it.
// It pulls one chunk at a time, so it never has more than one chunk in
// flight and notices a stalled link after artifactStall.
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
	// The object store's layout (NATS ADR-20): the chunks of an object
	// are the messages on $O.<bucket>.C.<nuid> in stream OBJ_<bucket>.
	cons, err := js.OrderedConsumer(rctx, "OBJ_"+wire.ArtifactStore, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$O." + wire.ArtifactStore + ".C." + info.NUID},
	})
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	stored := make(chan error, 1)
	go func() {
		err := u.cfg.Node.PutArtifact(ref, pr)
		pr.CloseWithError(err) // unblocks the writer if the cache gave up
		stored <- err
	}()
	pw.CloseWithError(copyChunks(ctx, cons, info.Chunks, pw))
	return <-stored
}

// copyChunks writes n chunks from cons to w, in order.
func copyChunks(ctx context.Context, cons jetstream.Consumer, n uint32, w io.Writer) error {
	for got := uint32(0); got < n; {
		cctx, cancel := context.WithTimeout(ctx, artifactStall)
		batch, err := cons.Fetch(1, jetstream.FetchContext(cctx))
		if err != nil {
			cancel()
			return err
		}
		before := got
		for m := range batch.Messages() {
			if _, err := w.Write(m.Data()); err != nil {
				cancel()
				return err
			}
			got++
		}
		cancel()
		if err := batch.Error(); err != nil {
			return fmt.Errorf("chunk %d of %d: %w", got+1, n, err)
		}
		if got == before {
			return fmt.Errorf("chunk %d of %d: none within %v", got+1, n, artifactStall)
		}
	}
	return nil
}
