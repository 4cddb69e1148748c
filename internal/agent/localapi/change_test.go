package localapi_test

import (
	"testing"

	"atoll.dev/atoll/internal/agent/localapi/localapitest"
	"atoll.dev/atoll/internal/agent/supervisor"
)

func TestLocalChanges_PriorityAndSet(t *testing.T) {
	n := &localapitest.Node{Statuses: []supervisor.Status{{Name: "web"}}}
	sock := serve(t, n)

	if code, body, _ := call(t, sock, "POST", "/v1/workloads:apply?priority=200", "["+validWorkload+"]"); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	if code, body, _ := call(t, sock, "POST", "/v1/workloads/web:set", `{"env":{"B":"2","A":"1"},"unset":["C"],"priority":70}`); code != 204 {
		t.Fatalf("set: %d %s", code, body)
	}
	if code, body, _ := call(t, sock, "DELETE", "/v1/workloads/web?priority=5", ""); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	wantCalls(t, n, "Apply(web)@200", "Set(web,A,B,-C)@70", "Delete(web)@5")

	code, body, h := call(t, sock, "POST", "/v1/workloads:apply?priority=high", "["+validWorkload+"]")
	wantError(t, code, body, h, 400, `priority: "high" is not an integer`)
	code, body, h = call(t, sock, "POST", "/v1/workloads/web:set", `{}`)
	wantError(t, code, body, h, 400, "nothing to set")
	code, body, h = call(t, sock, "POST", "/v1/workloads/web:set", `{"env":{"1BAD":"x"}}`)
	wantError(t, code, body, h, 400, `env: "1BAD" is not a variable name`)
	code, body, h = call(t, sock, "POST", "/v1/workloads/nope:set", `{"env":{"A":"1"}}`)
	wantError(t, code, body, h, 404, "workload not found")
}
