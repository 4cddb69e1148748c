package hubtest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"atoll.dev/atoll/internal/wire"
)

// Agent is a fake agent: it speaks the wire protocol with nats.go and
// keeps the little state a real agent would (its stored plan, its
// revisions, the commands it carried out). Its methods fail the test on a
// transport error; protocol errors come back in the replies. It is not
// safe for concurrent use, except Notifies.
type Agent struct {
	t  testing.TB
	nc *nats.Conn

	Name     string
	Labels   map[string]string
	Protocol int
	// Plan is the stored plan; Stored and Applied the revisions reported.
	Plan            *wire.Plan
	Stored, Applied uint64
	// Done are command ids to report in the next heartbeat.
	Done []string
	// Digest is the digest of the last status sent.
	Digest string

	notifies chan wire.Notify
}

// NewAgent connects a fake agent for node name to url. Its connection
// closes at the end of the test (or with Close).
func NewAgent(t testing.TB, url, name string, labels map[string]string) *Agent {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("agent %s: connect: %v", name, err)
	}
	t.Cleanup(nc.Close)
	a := &Agent{t: t, nc: nc, Name: name, Labels: labels, Protocol: wire.ProtocolVersion,
		notifies: make(chan wire.Notify, 64)}
	_, err = nc.Subscribe(wire.SubjectNotify+name, func(m *nats.Msg) {
		var n wire.Notify
		if json.Unmarshal(m.Data, &n) == nil {
			select {
			case a.notifies <- n:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return a
}

// Close disconnects the agent from NATS.
func (a *Agent) Close() { a.nc.Close() }

// Notifies delivers the Notify messages the hub pushed.
func (a *Agent) Notifies() <-chan wire.Notify { return a.notifies }

// Request sends v on subject and decodes the reply into out.
func (a *Agent) Request(subject string, v, out any) {
	a.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		a.t.Fatal(err)
	}
	m, err := a.nc.Request(subject, b, 10*time.Second)
	if err != nil {
		a.t.Fatalf("agent %s: request %s: %v", a.Name, subject, err)
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		a.t.Fatalf("agent %s: reply on %s: %v", a.Name, subject, err)
	}
}

// Forward sends a telemetry batch and returns the hub's acknowledgement.
func (a *Agent) Forward(b wire.TelemetryBatch) wire.TelemetryAck {
	a.t.Helper()
	body, err := wire.EncodeTelemetryBatch(b)
	if err != nil {
		a.t.Fatal(err)
	}
	m, err := a.nc.Request(wire.SubjectTelemetry+a.Name, body, 10*time.Second)
	if err != nil {
		a.t.Fatalf("agent %s: forward: %v", a.Name, err)
	}
	var ack wire.TelemetryAck
	if err := json.Unmarshal(m.Data, &ack); err != nil {
		a.t.Fatalf("agent %s: telemetry ack: %v", a.Name, err)
	}
	return ack
}

// HelloMsg is the Hello the agent sends.
func (a *Agent) HelloMsg() wire.Hello {
	return wire.Hello{ProtocolVersion: a.Protocol, Node: a.Name, Labels: a.Labels,
		CapacityMemory: 1 << 30, CapacityMilliCPU: 2000, Runtimes: []string{"exec"}, Version: "test"}
}

// Hello announces the agent.
func (a *Agent) Hello() wire.HelloReply {
	a.t.Helper()
	var r wire.HelloReply
	a.Request(wire.SubjectHello+a.Name, a.HelloMsg(), &r)
	return r
}

// HeartbeatMsg is the Heartbeat the agent sends now.
func (a *Agent) HeartbeatMsg() wire.Heartbeat {
	return wire.Heartbeat{Node: a.Name, StoredRevision: a.Stored, AppliedRevision: a.Applied,
		StatusDigest: a.Digest, DoneCommands: a.Done}
}

// Heartbeat sends a heartbeat; on success the done commands count as
// acknowledged.
func (a *Agent) Heartbeat() wire.HeartbeatReply {
	a.t.Helper()
	var r wire.HeartbeatReply
	a.Request(wire.SubjectHeartbeat+a.Name, a.HeartbeatMsg(), &r)
	if r.Error == "" {
		a.Done = nil
	}
	return r
}

// FetchPlan asks for a plan newer than the stored one and stores it.
func (a *Agent) FetchPlan() wire.PlanReply {
	a.t.Helper()
	var r wire.PlanReply
	a.Request(wire.SubjectPlan+a.Name, wire.PlanRequest{Node: a.Name, Have: a.Stored}, &r)
	if r.Plan != nil {
		a.Plan, a.Stored = r.Plan, r.Plan.Revision
	}
	return r
}

// Status is a status with every planned workload running at the stored
// revision.
func (a *Agent) Status() wire.Status {
	st := wire.Status{Node: a.Name, StoredRevision: a.Stored, AppliedRevision: a.Applied,
		Workloads: []wire.WorkloadStatus{}, Time: time.Now()}
	if a.Plan != nil {
		for _, pw := range a.Plan.Workloads {
			st.Workloads = append(st.Workloads, wire.WorkloadStatus{Name: pw.Workload.Metadata.Name,
				Runtime: string(pw.Workload.Spec.Runtime), State: wire.StateRunning, PID: 100})
		}
	}
	b, _ := json.Marshal(struct {
		S, A uint64
		W    []wire.WorkloadStatus
	}{st.StoredRevision, st.AppliedRevision, st.Workloads})
	sum := sha256.Sum256(b)
	st.Digest = hex.EncodeToString(sum[:8])
	return st
}

// SendStatus publishes st and remembers its digest.
func (a *Agent) SendStatus(st wire.Status) {
	a.t.Helper()
	b, _ := json.Marshal(st)
	if err := a.nc.Publish(wire.SubjectStatus+a.Name, b); err != nil {
		a.t.Fatal(err)
	}
	if err := a.nc.Flush(); err != nil {
		a.t.Fatal(err)
	}
	a.Digest = st.Digest
}

// Sync runs one round of the sync loop the way the wire package describes
// it: heartbeat; fetch and store a newer plan, apply it and heartbeat
// again; send the status when asked. It returns the last reply.
func (a *Agent) Sync() wire.HeartbeatReply {
	a.t.Helper()
	r := a.Heartbeat()
	if r.Error != "" {
		return r
	}
	if r.PlanRevision > a.Stored {
		a.FetchPlan()
		a.Applied = a.Stored
		if r = a.Heartbeat(); r.Error != "" {
			return r
		}
	}
	if r.NeedStatus {
		a.SendStatus(a.Status())
	}
	return r
}

// ServeLogs answers log requests with f.
func (a *Agent) ServeLogs(f func(wire.LogsRequest) wire.LogsReply) {
	a.t.Helper()
	_, err := a.nc.Subscribe(wire.SubjectLogs+a.Name, func(m *nats.Msg) {
		var req wire.LogsRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			return
		}
		b, _ := json.Marshal(f(req))
		_ = m.Respond(b)
	})
	if err != nil {
		a.t.Fatal(err)
	}
	if err := a.nc.Flush(); err != nil {
		a.t.Fatal(err)
	}
}
