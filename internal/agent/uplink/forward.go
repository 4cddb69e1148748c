package uplink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"atoll.dev/atoll/internal/wire"
)

// Outbox is the node's store of workload messages waiting for the hub
// (package broker).
type Outbox interface {
	// Epoch names the outbox; record sequence numbers count within it.
	Epoch() string
	// Read returns records after seq, oldest first, up to about maxBytes
	// (at least one when there is one), and how many records after seq
	// the outbox dropped before they were forwarded.
	Read(ctx context.Context, after uint64, maxBytes int) ([]wire.TelemetryRecord, uint64, error)
	// Forwarded lets the outbox drop the records up to seq.
	Forwarded(ctx context.Context, seq uint64) error
	// Arrived is signalled when records arrive.
	Arrived() <-chan struct{}
}

// Telemetry forwarding.
const (
	// DefaultForwardRate bounds what a node forwards, so that a fleet
	// coming back from an outage does not flood its hub: 256 KiB of
	// record data a second drains a day of a 10-reading-a-second sensor
	// (~100 bytes each) in about six minutes.
	DefaultForwardRate = 256 << 10
	// forwardBatch is the record data sent in one request: small enough
	// that a batch crosses a 64 kbit/s link, compressed, in a few
	// seconds, beside the heartbeats on the same connection.
	forwardBatch = 64 << 10
	// forwardTimeout bounds one batch's request.
	forwardTimeout = 30 * time.Second
)

// errRefused is a batch the hub answered with an error: a bug or a
// mismatch worth a warning, unlike a timeout on a bad link.
var errRefused = errors.New("hub refused telemetry")

func (u *Uplink) pokeForward() {
	select {
	case u.forward <- struct{}{}:
	default:
	}
}

// forwardLoop forwards the outbox to the hub while the link is up, until
// ctx is done: on every arrival, on every (re)connect, and every heartbeat
// interval after a failure.
func (u *Uplink) forwardLoop(ctx context.Context, nc *nats.Conn) {
	synced := uint64(0) // the connection the hub's position was learnt on
	for {
		if u.Connected() {
			u.mu.Lock()
			conn := u.conns
			u.mu.Unlock()
			cctx, cancel := u.onThisConnection(ctx)
			err := u.forwardAll(cctx, nc, synced != conn)
			cancel()
			if err == nil {
				synced = conn
			} else if errors.Is(err, errRefused) {
				u.cfg.Logger.Warn("forward telemetry", "err", err)
			} else if ctx.Err() == nil {
				u.cfg.Logger.Debug("forward telemetry", "err", err)
			}
		}
		t := time.NewTimer(u.cfg.Heartbeat)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-u.cfg.Outbox.Arrived():
		case <-u.forward:
		case <-t.C:
		}
		t.Stop()
	}
}

// forwardAll sends the outbox to the hub, batch by batch, at most
// ForwardRate bytes a second; sync first asks the hub where it stands (a
// reconnect: a batch whose acknowledgement was lost is not sent again).
func (u *Uplink) forwardAll(ctx context.Context, nc *nats.Conn, sync bool) error {
	out := u.cfg.Outbox
	epoch := out.Epoch()
	cur, err := u.cfg.Node.TelemetryCursor(epoch)
	if err != nil {
		return err
	}
	if sync {
		if cur, err = u.sendBatch(ctx, nc, wire.TelemetryBatch{Node: u.name, Epoch: epoch}, cur); err != nil {
			return err
		}
	}
	for {
		recs, dropped, err := out.Read(ctx, cur, forwardBatch)
		if err != nil {
			return err
		}
		if dropped > 0 {
			u.cfg.Node.TelemetryDropped(dropped)
		}
		if len(recs) == 0 {
			return nil
		}
		began := time.Now()
		if cur, err = u.sendBatch(ctx, nc, wire.TelemetryBatch{Node: u.name, Epoch: epoch, Records: recs}, cur); err != nil {
			return err
		}
		if last := recs[len(recs)-1].Seq; cur < last {
			return fmt.Errorf("the hub holds records up to %d of a batch up to %d", cur, last)
		}
		size := 0
		for _, r := range recs {
			size += len(r.Data)
		}
		// Pace to ForwardRate: this batch's share of a second, less the
		// time it took.
		pace := time.Until(began.Add(time.Duration(size) * time.Second / time.Duration(u.cfg.ForwardRate)))
		if pace > 0 {
			t := time.NewTimer(pace)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
}

// sendBatch sends b and moves the cursor to what the hub holds, letting
// the outbox drop that. It returns the new cursor.
func (u *Uplink) sendBatch(ctx context.Context, nc *nats.Conn, b wire.TelemetryBatch, cur uint64) (uint64, error) {
	body, err := wire.EncodeTelemetryBatch(b)
	if err != nil {
		return cur, err
	}
	var ack wire.TelemetryAck
	if err := u.requestBody(ctx, nc, forwardTimeout, wire.SubjectTelemetry, body, &ack); err != nil {
		return cur, err
	}
	if ack.Error != "" {
		return cur, fmt.Errorf("%w: %s", errRefused, ack.Error)
	}
	if ack.Epoch != b.Epoch || ack.Stored <= cur {
		return cur, nil // the hub holds nothing of this epoch past cur
	}
	if err := u.cfg.Node.SetTelemetryCursor(b.Epoch, ack.Stored); err != nil {
		return cur, err
	}
	if err := u.cfg.Outbox.Forwarded(ctx, ack.Stored); err != nil {
		return ack.Stored, err
	}
	return ack.Stored, nil
}
