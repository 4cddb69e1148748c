package natsembed_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/natsembed"
)

func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestStart_JetStreamSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	s, err := natsembed.Start(natsembed.Config{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:") || strings.HasSuffix(s.ClientURL(), ":0") {
		t.Fatalf("ClientURL = %q, want nats://127.0.0.1:<random port>", s.ClientURL())
	}
	js := connect(t, s.ClientURL())
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()

	s2, err := natsembed.Start(natsembed.Config{DataDir: dir, Listen: ":0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown()
	js2 := connect(t, s2.ClientURL())
	kv2, err := js2.KeyValue(ctx, "b")
	if err != nil {
		t.Fatalf("bucket after restart: %v", err)
	}
	e, err := kv2.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("k after restart = %v, %v; want v", e, err)
	}
}

func TestStart_ConfigureSeesOptions(t *testing.T) {
	var seen server.Options
	s, err := natsembed.Start(natsembed.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Configure: func(o *server.Options) { seen = *o.Clone(); o.ServerName = "custom" },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if !seen.JetStream || seen.Port != server.RANDOM_PORT || seen.StoreDir == "" {
		t.Fatalf("Configure saw JetStream=%v Port=%d StoreDir=%q, want JetStream on disk on a random port",
			seen.JetStream, seen.Port, seen.StoreDir)
	}
	if got := s.NATS().Name(); got != "custom" {
		t.Fatalf("server name = %q, want the one Configure set", got)
	}
}

func TestStart_BadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  natsembed.Config
		want string
	}{
		{"no data dir", natsembed.Config{Listen: ":0"}, "no data directory"},
		{"no port", natsembed.Config{DataDir: t.TempDir(), Listen: "127.0.0.1"}, "listen address"},
		{"bad port", natsembed.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:99999"}, "port must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := natsembed.Start(tc.cfg)
			if err == nil {
				s.Shutdown()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "start nats") {
				t.Fatalf("error %q, want it to start with \"start nats\" and mention %q", err, tc.want)
			}
		})
	}
}
