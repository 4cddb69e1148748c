package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/hub/api"
)

// followEvery is how often `atoll telemetry tail -f` asks the hub for new
// records.
const followEvery = time.Second

func newTelemetryCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "telemetry",
		Short: "Read the telemetry nodes forwarded to the hub",
		Args:  cobra.NoArgs,
	}
	hub := addHubFlag(e, cmd)
	cmd.AddCommand(newTelemetryTailCmd(e, hub))
	return cmd
}

func newTelemetryTailCmd(e *env, hub *hubFlag) *cobra.Command {
	var (
		q      api.TelemetryQuery
		follow bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print the latest records nodes forwarded, oldest first; with -f, keep printing new ones",
		Long: "Print the latest records nodes forwarded to the hub, oldest first. A record's data\n" +
			"shows as text when it is printable, else as its size. With -f, ask the hub every\n" +
			"second for the records stored since, until interrupted.",
		Args: cobra.NoArgs,
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(output, "json", "yaml"); err != nil {
			return err
		}
		if q.Limit < 1 || q.Limit > api.MaxTelemetryLimit {
			return fmt.Errorf("-n %d: want a number of records from 1 to %d", q.Limit, api.MaxTelemetryLimit)
		}
		c, err := hub.client()
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		recs, err := c.Telemetry(ctx, q)
		if err != nil {
			return err
		}
		if !follow {
			if output != "" {
				return printStructured(e.stdout, output, recs)
			}
			return printRecords(e.stdout, recs, true)
		}
		// Follow from the last record shown; with none shown, every record
		// that matches is new, so from the stream's start.
		var after uint64
		for header := true; ; header = false {
			if err := printFollowed(e.stdout, output, recs, header); err != nil {
				return err
			}
			if len(recs) > 0 {
				after = recs[len(recs)-1].StreamSeq
			}
			if len(recs) < api.MaxTelemetryLimit {
				t := time.NewTimer(followEvery)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil // interrupted: a normal end
				case <-t.C:
				}
			}
			q.After, q.Limit = &after, api.MaxTelemetryLimit
			if recs, err = c.Telemetry(ctx, q); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
	fl := cmd.Flags()
	fl.StringVar(&q.Node, "node", "", "show only this node's records")
	fl.StringVar(&q.Subject, "subject", "", "show only records on this subject or pattern (sensors.>)")
	fl.IntVarP(&q.Limit, "limit", "n", 20, fmt.Sprintf("show the latest N records (at most %d)", api.MaxTelemetryLimit))
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new records until interrupted")
	fl.StringVarP(&output, "output", "o", "", "output format: json or yaml (with -f: one JSON object per line, or one YAML document per record)")
	return cmd
}

// printRecords prints recs as a table, with its header when header is set.
func printRecords(w io.Writer, recs []api.TelemetryRecord, header bool) error {
	tw := newTable(w)
	if header {
		tableRow(tw, "TIME", "NODE", "SUBJECT", "SEQ", "DATA")
	}
	for _, r := range recs {
		tableRow(tw, formatTime(r.Time), r.Node, r.Subject, strconv.FormatUint(r.Seq, 10), dataCell(r))
	}
	return tw.Flush()
}

// printFollowed prints the records of one poll of tail -f: table rows, or
// one JSON object a line, or one YAML document each.
func printFollowed(w io.Writer, output string, recs []api.TelemetryRecord, header bool) error {
	switch output {
	case "":
		return printRecords(w, recs, header)
	case "json":
		for _, r := range recs {
			b, err := json.Marshal(r)
			if err != nil {
				return fmt.Errorf("encode json: %w", err)
			}
			if _, err := w.Write(append(b, '\n')); err != nil {
				return err
			}
		}
	default:
		for _, r := range recs {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
			if err := printYAML(w, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// dataCell is a record's data as text when it is printable, else its
// size.
func dataCell(r api.TelemetryRecord) string {
	if len(r.Data) == 0 {
		return ""
	}
	printable := r.Text != ""
	for _, c := range r.Text {
		printable = printable && (unicode.IsPrint(c) || c == '\t' || c == '\n' || c == '\r')
	}
	if printable {
		return r.Text
	}
	return fmt.Sprintf("<%d bytes>", len(r.Data))
}
