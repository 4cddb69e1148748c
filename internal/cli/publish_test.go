package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"atoll.dev/atoll/internal/agent/broker"
)

func TestPublish(t *testing.T) {
	ctx := context.Background()
	b, err := broker.Start(ctx, broker.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Name: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.SetSubjects(ctx, []string{"sensors.>"}); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"ATOLL_NATS_URL": b.URL()}

	// A forwarded subject: stored in the outbox when the command returns.
	if code, out, errOut := atoll(t, vars, "publish", "sensors.temp", "21.5"); code != 0 || out != "" || errOut != "" {
		t.Fatalf("publish = %d %q %q", code, out, errOut)
	}
	// With an id, a retry is stored once.
	for range 2 {
		if code, _, errOut := atoll(t, vars, "publish", "--id", "r-1", "sensors.temp", "21.6"); code != 0 {
			t.Fatalf("publish --id = %d %q", code, errOut)
		}
	}
	recs, _, err := b.Read(ctx, 0, 1<<20)
	if err != nil || len(recs) != 2 || recs[0].Subject != "sensors.temp" || string(recs[0].Data) != "21.5" || string(recs[1].Data) != "21.6" {
		t.Fatalf("outbox holds %+v, %v", recs, err)
	}

	// Another subject: local subscribers only, and a note says so.
	nc, err := nats.Connect(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("chat.x")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := atoll(t, vars, "publish", "chat.x", "hi")
	if code != 0 || !strings.Contains(errOut, "no workload on this node forwards chat.x: delivered to local subscribers only") {
		t.Fatalf("publish chat.x = %d %q", code, errOut)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "hi" {
		t.Fatalf("local subscriber got %v, %v", m, err)
	}
}

func TestPublish_Errors(t *testing.T) {
	tests := []struct {
		vars map[string]string
		args []string
		want string
	}{
		{nil, []string{"publish", "sensors.temp", "1"}, "no broker: set --broker or $ATOLL_NATS_URL"},
		{nil, []string{"publish", "sensors.*", "1"}, `subject "sensors.*": has the wildcard "*"`},
		{nil, []string{"publish", "a..b", "1"}, `subject "a..b": has an empty token`},
		{map[string]string{"ATOLL_NATS_URL": "nats://127.0.0.1:1"}, []string{"publish", "a.b", "1"}, "broker nats://127.0.0.1:1:"},
	}
	for _, tt := range tests {
		code, _, errOut := atoll(t, tt.vars, tt.args...)
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%q = %d %q; want 1 and %q", tt.args, code, errOut, tt.want)
		}
	}
}
