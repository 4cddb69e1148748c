package uplink

import (
	"encoding/json"
	"testing"
)

func TestHeard_QuietHeartbeats(t *testing.T) {
	body := func(h heard, stored, applied uint64, digest string) string {
		b, err := json.Marshal(h.heartbeat(stored, applied, digest))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	full := `{"storedRevision":3,"appliedRevision":2,"statusDigest":"d1"}`
	if got := body(heard{}, 3, 2, "d1"); got != full {
		t.Errorf("a hub without quiet heartbeats gets %s, want %s", got, full)
	}
	h := heard{quiet: true}
	if got := body(h, 3, 2, "d1"); got != full {
		t.Errorf("first heartbeat after hello = %s, want %s", got, full)
	}
	h.answered(h.heartbeat(3, 2, "d1"), 3, 2, false)
	if got := body(h, 3, 2, "d1"); got != "{}" {
		t.Errorf("idle heartbeat = %s, want {}", got)
	}
	if got := body(h, 4, 2, "d2"); got != `{"storedRevision":4,"statusDigest":"d2"}` {
		t.Errorf("after changes = %s, want the changed fields only", got)
	}
	// The hub asked for the status: the digest goes again until a reply
	// no longer asks.
	h.answered(h.heartbeat(4, 2, "d2"), 4, 2, true)
	if got := body(h, 4, 2, "d2"); got != `{"statusDigest":"d2"}` {
		t.Errorf("after a status request = %s, want the digest again", got)
	}
	h.answered(h.heartbeat(4, 2, "d2"), 4, 2, false)
	if got := body(h, 4, 2, "d2"); got != "{}" {
		t.Errorf("after the hub has the status = %s, want {}", got)
	}
}
