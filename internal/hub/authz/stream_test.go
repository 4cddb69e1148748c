package authz_test

import (
	"net/http"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/audit"
	"atoll.dev/atoll/internal/hub/hubtest"
)

// Against the real stream: every changing call, allowed or refused, is in
// the audit log with who, what and when, no reading call is, and a lost
// stream refuses changes before they run.
func TestWrap_AuditStream(t *testing.T) {
	ctx := hubtest.Context(t)
	_, js := hubtest.Connect(t, hubtest.NATS(t, "").ClientURL())
	log, err := audit.Open(ctx, js, audit.Config{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, log)

	calls := []struct{ role, method, path string }{
		{"viewer", "GET", "/v1/nodes"},
		{"operator", "POST", "/v1/workloads:apply"},
		{"operator", "POST", "/v1/tokens"},
		{"viewer", "GET", "/v1/workloads"},
		{"admin", "DELETE", "/v1/workloads/web"},
		{"admin", "GET", "/v1/audit"},
	}
	for _, c := range calls {
		f.call(t, c.role, c.method, c.path, "")
	}
	es, err := log.List(ctx, api.AuditQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		if !e.Time.Equal(testTime) || e.Serial == "" || !strings.HasPrefix(e.Remote, "127.0.0.1:") {
			t.Errorf("entry %+v: want the hub's time, the serial and the remote address", e)
		}
		got = append(got, strings.Join([]string{e.User, e.Role, e.Method, e.Path, http.StatusText(e.Status)}, " "))
	}
	want := []string{
		"user-operator operator POST /v1/workloads:apply Created",
		"user-operator operator POST /v1/tokens Forbidden",
		"user-admin admin DELETE /v1/workloads/web Created",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	if err := js.DeleteStream(ctx, audit.Stream); err != nil {
		t.Fatal(err)
	}
	before := len(f.backend.called())
	if code, msg := f.call(t, "admin", "POST", "/v1/workloads:apply", "[]"); code != http.StatusServiceUnavailable {
		t.Errorf("apply without the audit stream = %d %q; want 503", code, msg)
	}
	if n := len(f.backend.called()); n != before {
		t.Errorf("apply without the audit stream ran: %q", f.backend.called()[before:])
	}
}
