package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/subject"
)

// publishTimeout bounds `atoll publish`: the connection and the outbox's
// acknowledgement.
const publishTimeout = 5 * time.Second

func newPublishCmd(e *env) *cobra.Command {
	var url, id string
	cmd := &cobra.Command{
		Use:   "publish SUBJECT [DATA]",
		Short: "Publish a message on the node's broker (from a workload's script)",
		Long: "Publish DATA (or standard input) on SUBJECT to the node's local broker, at\n" +
			"$ATOLL_NATS_URL, which the agent gives its workloads. When a workload on the\n" +
			"node forwards SUBJECT (spec.forward), it returns once the node's outbox has\n" +
			"stored the message, which then reaches the hub, store-and-forward; otherwise\n" +
			"the message goes to the node's local subscribers only, and a note says so.\n" +
			"--id names the message: a retry with the same id within two minutes is stored once.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := subject.Check(args[0], false); err != nil {
				return fmt.Errorf("subject %q: %w", args[0], err)
			}
			if url == "" {
				url = e.getenv("ATOLL_NATS_URL")
			}
			if url == "" {
				return errors.New("no broker: set --broker or $ATOLL_NATS_URL (the agent sets it for its workloads when it runs with --broker)")
			}
			var data []byte
			if len(args) == 2 {
				data = []byte(args[1])
			} else {
				var err error
				if data, err = io.ReadAll(cmd.InOrStdin()); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), publishTimeout)
			defer cancel()
			forwarded, err := publishOnce(ctx, url, args[0], id, data)
			if err != nil {
				return err
			}
			if !forwarded {
				fmt.Fprintf(e.stderr, "note: no workload on this node forwards %s: delivered to local subscribers only\n", args[0])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "broker", "", "the node broker's NATS URL (default: $ATOLL_NATS_URL)")
	cmd.Flags().StringVar(&id, "id", "", "the message's id (Nats-Msg-Id), so a retry is stored once")
	return cmd
}

// publishOnce publishes data on subj: into the outbox if it captures subj
// (forwarded), else to subscribers only.
func publishOnce(ctx context.Context, url, subj, id string, data []byte) (forwarded bool, err error) {
	nc, err := nats.Connect(url, nats.Name("atoll-publish"), nats.Timeout(publishTimeout))
	if err != nil {
		return false, fmt.Errorf("broker %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false, err
	}
	// A request to a subject a local subscriber also listens on would
	// reach that subscriber: ask which stream captures it instead.
	_, err = js.StreamNameBySubject(ctx, subj)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if err := nc.Publish(subj, data); err != nil {
			return false, err
		}
		return false, nc.FlushWithContext(ctx)
	case err != nil:
		return false, fmt.Errorf("publish %s: %w", subj, err)
	}
	var opts []jetstream.PublishOpt
	if id != "" {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	if _, err := js.Publish(ctx, subj, data, opts...); err != nil {
		return false, fmt.Errorf("publish %s: %w", subj, err)
	}
	return true, nil
}
