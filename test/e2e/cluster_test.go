package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"go.yaml.in/yaml/v2"

	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/client"
)

// clusterLabel marks the Docker objects of one cluster (one test).
const clusterLabel = "atoll.e2e.cluster"

// Timing of the hosts under test: a fast heartbeat and a short node
// timeout, so that a partition shows at the hub within seconds.
const (
	heartbeat   = "500ms"
	nodeTimeout = 3 * time.Second
)

// Deadlines; they only bound failures.
var (
	readyTimeout    = 60 * time.Second // a container's atoll answering
	convergeTimeout = 90 * time.Second // a healed fleet converging
	cmdTimeout      = 60 * time.Second // one docker or CLI command
)

// cluster is one hub and its agents, each a container on a private network.
type cluster struct {
	t       *testing.T
	id      string
	network string
	gateway string
	hubIP   string
	hubURL  string
	hubName string // container
	// admin is the hub's admin credentials (copied out of its container)
	// as TLS for the API; token enrolls the agents.
	admin  *tls.Config
	token  string
	nodes  []*node
	start  time.Time
	aux    string // manifests written by the test
	toxi   *toxiproxy.ApiServer
	mon    *monitor
	broker bool // agents run a broker on 127.0.0.1:4223 (withBroker)

	mu       sync.Mutex
	timeline []string // guarded by mu
	files    int      // guarded by mu
}

// node is one agent host.
type node struct {
	c         *cluster
	name      string // node name and host name
	container string
	ip        string
	labels    string
	link      *link
}

// newCluster starts a hub and n agents and waits until the hub shows every
// node connected. Everything it creates is removed when the test ends.
func newCluster(t *testing.T, n int, opts ...func(*cluster)) *cluster {
	t.Helper()
	c := &cluster{t: t, id: runID + "-" + randHex(3), start: time.Now(), aux: t.TempDir(), toxi: newToxiServer()}
	for _, o := range opts {
		o(c)
	}
	c.network = "atoll-e2e-" + c.id
	c.hubName = "atoll-e2e-" + c.id + "-hub"
	t.Cleanup(c.cleanup)
	watchdog := time.AfterFunc(testBudget+*soakFor, c.overrun)
	t.Cleanup(func() { watchdog.Stop() })
	c.createNetwork()
	c.hubURL = "https://" + c.hubIP + ":7070"
	c.runHub()
	c.enrollment()
	ip, _ := netip.ParseAddr(c.hubIP)
	for i := 1; i <= n; i++ {
		ip = ip.Next()
		nd := &node{
			c:         c,
			name:      fmt.Sprintf("node-%d", i),
			container: fmt.Sprintf("atoll-e2e-%s-node-%d", c.id, i),
			ip:        ip.String(),
			labels:    fmt.Sprintf("fleet=e2e,n=%d", i),
		}
		l, err := newLink(c.toxi, nd.name, c.gateway, c.hubIP+":4222")
		if err != nil {
			t.Fatal(err)
		}
		nd.link = l
		c.nodes = append(c.nodes, nd)
		nd.run()
	}
	c.waitHubReady()
	for _, nd := range c.nodes {
		nd.waitReady()
	}
	atolltest.WaitFor(t, readyTimeout, func() error {
		for _, nd := range c.nodes {
			if s := c.hubNode(nd.name).State; s != "connected" {
				return fmt.Errorf("hub shows %s %q", nd.name, s)
			}
		}
		return nil
	})
	c.mon = startMonitor(c)
	c.logf("cluster up: hub %s, nodes %s, network %s (gateway %s)", c.hubIP, c.nodeNames(), c.network, c.gateway)
	return c
}

func (c *cluster) labels() []string {
	return []string{"--label", runLabel + "=" + runID, "--label", clusterLabel + "=" + c.id}
}

// createNetwork makes the cluster's bridge network with a subnet Docker
// picks (so it collides with nothing), fixed at creation so that every
// host keeps its address across restarts and reconnects.
func (c *cluster) createNetwork() {
	c.t.Helper()
	var lastErr error
	for try := 0; try < 5; try++ {
		probe := c.network + "-probe"
		if _, err := c.docker(append(append([]string{"network", "create"}, c.labels()...), probe)...); err != nil {
			c.t.Fatal(err)
		}
		cfg, err := c.docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}", probe)
		_, _ = c.docker("network", "rm", probe)
		if err != nil {
			c.t.Fatal(err)
		}
		f := strings.Fields(cfg)
		if len(f) != 2 {
			c.t.Fatalf("network %s: unexpected IPAM config %q", probe, cfg)
		}
		prefix, err := netip.ParsePrefix(f[0])
		if err != nil {
			c.t.Fatal(err)
		}
		c.gateway = f[1]
		hub := prefix.Addr()
		for i := 0; i < 10; i++ {
			hub = hub.Next()
		}
		c.hubIP = hub.String()
		args := append(append([]string{"network", "create"}, c.labels()...),
			"--subnet", f[0], "--gateway", f[1], c.network)
		if _, lastErr = c.docker(args...); lastErr == nil {
			return
		}
		// Another network took the subnet meanwhile: pick again.
	}
	c.t.Fatalf("create network: %v", lastErr)
}

// enrollment waits for the hub to write its admin credentials, copies
// them out of its container for the CLI and the API, and makes the token
// the agents enroll with.
func (c *cluster) enrollment() {
	c.t.Helper()
	conf := filepath.Join(c.aux, "admin.conf")
	atolltest.WaitFor(c.t, readyTimeout, func() error {
		_, err := c.docker("cp", c.hubName+":/data/admin.conf", conf)
		return err
	})
	b, err := os.ReadFile(conf)
	if err != nil {
		c.t.Fatal(err)
	}
	var creds client.Credentials
	if err := yaml.Unmarshal(b, &creds); err != nil {
		c.t.Fatal(err)
	}
	if c.admin, err = creds.TLS(); err != nil {
		c.t.Fatal(err)
	}
	c.waitHubReady()
	out, err := c.cli("token", "create", "--uses", "100", "--ttl", "2h")
	if err != nil {
		c.t.Fatal(err)
	}
	c.token = strings.TrimSpace(out)
}

// httpClient talks to the hub's API as its admin.
func (c *cluster) httpClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: c.admin}}
}

func (c *cluster) runHub() {
	c.t.Helper()
	args := append(append([]string{"run", "-d", "--init", "--name", c.hubName, "--hostname", "hub"}, c.labels()...),
		"--network", c.network, "--ip", c.hubIP, image,
		"/atoll", "hub", "--data", "/data", "--listen", "0.0.0.0:7070", "--nats-listen", "0.0.0.0:4222",
		"--node-timeout", nodeTimeout.String())
	if _, err := c.docker(args...); err != nil {
		c.t.Fatal(err)
	}
}

// run starts the node's container. The agent runs under a busybox sh loop
// that starts it again when it dies, as systemd would (KillMode=process:
// the workloads are not the loop's children and survive the agent), and
// writes its PID to /tmp/agent.pid.
func (n *node) run() {
	n.c.t.Helper()
	broker := ""
	if n.c.broker {
		broker = " --broker 127.0.0.1:4223"
	}
	// The token enrolls the node at its first start; later starts use the
	// certificate in /data/identity.
	loop := fmt.Sprintf("while :; do /atoll agent --data /data --name %s --labels %s --hub nats://%s --heartbeat %s --pressure-threshold off%s & echo $! > /tmp/agent.pid; wait $!; sleep 0.2; done",
		n.name, n.labels, n.link.Addr(), heartbeat, broker)
	args := append(append([]string{"run", "-d", "--init", "--name", n.container, "--hostname", n.name}, n.c.labels()...),
		"--network", n.c.network, "--ip", n.ip, "-e", "ATOLL_TOKEN="+n.c.token, image, "sh", "-c", loop)
	if _, err := n.c.docker(args...); err != nil {
		n.c.t.Fatal(err)
	}
}

// testBudget is how long a scenario may run (the longest takes under a
// minute) before overrun ends the test binary.
const testBudget = 8 * time.Minute

// overrun reports a test that ran past its budget and exits: on a timeout
// go test prints only goroutines, not the running test's log, so the
// timeline and the hosts' output would be lost.
func (c *cluster) overrun() {
	c.mu.Lock()
	timeline := strings.Join(c.timeline, "\n")
	c.mu.Unlock()
	fmt.Fprintf(os.Stderr, "e2e: %s ran past %v; its timeline:\n%s\n", c.t.Name(), testBudget, timeline)
	for _, name := range append([]string{c.hubName}, c.containerNames()...) {
		out, _ := exec.Command("docker", "logs", "--tail", "30", name).CombinedOutput()
		fmt.Fprintf(os.Stderr, "--- last output of %s:\n%s\n", name, out)
	}
	removeByLabel(runLabel + "=" + runID)
	os.Exit(3)
}

// cleanup removes the cluster's containers and network and stops its
// proxies; on failure it first logs the tail of every host's output.
func (c *cluster) cleanup() {
	if c.mon != nil {
		c.mon.stop()
	}
	if c.t.Failed() {
		for _, name := range append([]string{c.hubName}, c.containerNames()...) {
			out, _ := exec.Command("docker", "logs", "--tail", "60", name).CombinedOutput()
			c.t.Logf("--- last output of %s:\n%s", name, out)
		}
	}
	_ = c.toxi.Collection.Clear()
	removeByLabel(clusterLabel + "=" + c.id)
}

func (c *cluster) containerNames() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.container)
	}
	return out
}

func (c *cluster) nodeNames() string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.name+"="+n.ip)
	}
	return strings.Join(out, " ")
}

// logf adds a line to the timeline, with the time since the cluster
// started, and logs it.
func (c *cluster) logf(format string, args ...any) {
	line := fmt.Sprintf("[%7.1fs] %s", time.Since(c.start).Seconds(), fmt.Sprintf(format, args...))
	c.mu.Lock()
	c.timeline = append(c.timeline, line)
	c.mu.Unlock()
	c.t.Log(line)
}

func (c *cluster) docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	return dockerCtx(ctx, args...)
}

func (c *cluster) mustDocker(args ...string) string {
	c.t.Helper()
	out, err := c.docker(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// ---- the hub ----

// cli runs a fleet verb of the atoll CLI on the test host against the hub.
func (c *cluster) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, atollBin, append(args, "--hub", c.hubURL)...)
	cmd.Env = cliEnv(filepath.Join(c.aux, "admin.conf"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("atoll %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (c *cluster) mustCLI(args ...string) string {
	c.t.Helper()
	out, err := c.cli(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// cliJSON runs a fleet verb with -o json and decodes its output into v.
func (c *cluster) cliJSON(v any, args ...string) error {
	out, err := c.cli(append(args, "-o", "json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("atoll %s -o json: %v: %q", strings.Join(args, " "), err, out)
	}
	return nil
}

// cliEnv is the environment of the CLI: this process's, with the CLI
// config pointed at nothing, so a developer's config cannot interfere.
func cliEnv(config string) []string {
	env := []string{"ATOLL_CONFIG=" + config}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ATOLL_") {
			env = append(env, kv)
		}
	}
	return env
}

// hubNodeView is a node in `atoll get nodes -o json`.
type hubNodeView struct {
	Name            string    `json:"name"`
	State           string    `json:"state"`
	LastSeen        time.Time `json:"lastSeen"`
	PlanRevision    uint64    `json:"planRevision"`
	StoredRevision  uint64    `json:"storedRevision"`
	AppliedRevision uint64    `json:"appliedRevision"`
	Workloads       int       `json:"workloads"`
}

// hubWorkloadView is a workload in `atoll get workloads -o json`.
type hubWorkloadView struct {
	Name      string `json:"name"`
	Targets   int    `json:"targets"`
	Instances []struct {
		Node      string `json:"node"`
		NodeState string `json:"nodeState"`
		State     string `json:"state"`
		Reason    string `json:"reason"`
		Restarts  int    `json:"restarts"`
		Revision  uint64 `json:"revision"`
	} `json:"instances"`
}

// event is an event as the node and the hub print it with -o json.
type event struct {
	Node     string    `json:"node"`
	Seq      uint64    `json:"seq"`
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Workload string    `json:"workload"`
	Type     string    `json:"type"`
	Message  string    `json:"message"`
}

func (c *cluster) hubNodes() ([]hubNodeView, error) {
	var ns []hubNodeView
	err := c.cliJSON(&ns, "get", "nodes")
	return ns, err
}

// hubNode returns the hub's view of one node (State "" if the hub does
// not answer or does not list it).
func (c *cluster) hubNode(name string) hubNodeView {
	ns, _ := c.hubNodes()
	for _, n := range ns {
		if n.Name == name {
			return n
		}
	}
	return hubNodeView{}
}

func (c *cluster) hubWorkloads() ([]hubWorkloadView, error) {
	var ws []hubWorkloadView
	err := c.cliJSON(&ws, "get", "workloads")
	return ws, err
}

// eventsPage is the most events one `atoll events` query returns.
var eventsPage = 1000

// hubEvents returns the hub's events about one node, oldest first (each
// cluster has its own hub, so that is every event of the test). One query
// gives at most eventsPage events and the API has no cursor, only --since
// (the time the hub stored an event; an event's own time is never later),
// and without --since the latest events. So it reads the oldest page, then
// the latest page, and, when those two do not overlap, pages in between
// from the latest event time read so far; every page must overlap what was
// read before (the overlap is dropped by lining the pages up), or the
// answer would have a gap and it says so.
func (c *cluster) hubEvents(nodeName string) ([]event, error) {
	query := func(since time.Time) ([]event, error) {
		args := []string{"events", "--node", nodeName, "--limit", strconv.Itoa(eventsPage)}
		if !since.IsZero() {
			args = append(args, "--since", since.UTC().Format(time.RFC3339Nano))
		}
		var page []event
		err := c.cliJSON(&page, args...)
		return page, err
	}
	all, err := query(c.start.Add(-time.Second))
	if err != nil || len(all) < eventsPage {
		return all, err
	}
	latest, err := query(time.Time{})
	if err != nil {
		return nil, err
	}
	since := c.start
	for range 100 {
		if k := overlap(all, latest); k > 0 {
			return append(all, latest[k:]...), nil
		}
		for _, e := range all[len(all)-eventsPage:] {
			if e.Time.After(since) {
				since = e.Time
			}
		}
		page, err := query(since)
		if err != nil {
			return nil, err
		}
		k := overlap(all, page)
		if k == 0 || k == len(page) {
			return nil, fmt.Errorf("events of %s: cannot page past %v (%d read)", nodeName, since, len(all))
		}
		all = append(all, page[k:]...)
	}
	return nil, fmt.Errorf("events of %s: more than 100 pages", nodeName)
}

// overlap is the length of the longest suffix of all that is a prefix of
// page.
func overlap(all, page []event) int {
	for k := min(len(all), len(page)); k > 0; k-- {
		match := true
		for i := range k {
			if all[len(all)-k+i].ID != page[i].ID {
				match = false
				break
			}
		}
		if match {
			return k
		}
	}
	return 0
}

// waitHubState waits until the hub shows the node in state.
func (c *cluster) waitHubState(n *node, state string, timeout time.Duration) {
	c.t.Helper()
	atolltest.WaitFor(c.t, timeout, func() error {
		if s := c.hubNode(n.name).State; s != state {
			return fmt.Errorf("hub shows %s %q, want %q", n.name, s, state)
		}
		return nil
	})
	c.logf("hub shows %s %s", n.name, state)
}

// waitHubReady waits until the hub's API answers.
func (c *cluster) waitHubReady() {
	c.t.Helper()
	atolltest.WaitFor(c.t, readyTimeout, func() error {
		_, err := c.hubNodes()
		return err
	})
}

// killHub kills the hub container (SIGKILL to everything in it); its data
// stays in the container's filesystem.
func (c *cluster) killHub() {
	c.t.Helper()
	c.mustDocker("kill", c.hubName)
	c.logf("hub killed")
}

// startHub starts the killed hub container again and waits for its API.
func (c *cluster) startHub() {
	c.t.Helper()
	c.mustDocker("start", c.hubName)
	c.waitHubReady()
	c.logf("hub back")
}

// manifest writes workloads (JSON is YAML) to a file for `apply -f`.
func (c *cluster) manifest(ws ...workload) string {
	c.t.Helper()
	var b bytes.Buffer
	for i, w := range ws {
		if i > 0 {
			b.WriteString("---\n")
		}
		j, err := json.Marshal(w.manifest())
		if err != nil {
			c.t.Fatal(err)
		}
		b.Write(j)
		b.WriteString("\n")
	}
	c.mu.Lock()
	c.files++
	p := filepath.Join(c.aux, fmt.Sprintf("manifest-%d.yaml", c.files))
	c.mu.Unlock()
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// apply sends workloads to the hub with `atoll apply`.
func (c *cluster) apply(ws ...workload) {
	c.t.Helper()
	out := c.mustCLI("apply", "-f", c.manifest(ws...))
	c.logf("apply: %s", strings.Join(strings.Fields(strings.ReplaceAll(out, "\n", "; ")), " "))
}

// workload is the part of a manifest the scenarios vary.
type workload struct {
	name     string
	command  []string
	env      map[string]string
	nodes    []string          // placement.nodes
	selector map[string]string // placement.nodeSelector
	policy   string            // restart policy; default always
	module   string            // wasm module reference; runtime wasm when set
	forward  []string          // spec.forward
}

func (w workload) manifest() map[string]any {
	spec := map[string]any{}
	if w.module != "" {
		spec["runtime"] = "wasm"
		wasm := map[string]any{"module": w.module}
		if len(w.env) > 0 {
			wasm["env"] = w.env
		}
		spec["wasm"] = wasm
	} else {
		spec["runtime"] = "exec"
		ex := map[string]any{"command": w.command}
		if len(w.env) > 0 {
			ex["env"] = w.env
		}
		spec["exec"] = ex
	}
	restart := map[string]any{"backoff": map[string]any{"initial": "100ms", "max": "2s", "resetAfter": "5s"}}
	if w.policy != "" {
		restart["policy"] = w.policy
	}
	spec["restart"] = restart
	placement := map[string]any{}
	if len(w.nodes) > 0 {
		placement["nodes"] = w.nodes
	}
	if len(w.selector) > 0 {
		placement["nodeSelector"] = w.selector
	}
	spec["placement"] = placement
	if len(w.forward) > 0 {
		spec["forward"] = w.forward
	}
	return map[string]any{
		"apiVersion": "atoll.dev/v1",
		"kind":       "Workload",
		"metadata":   map[string]any{"name": w.name},
		"spec":       spec,
	}
}

// withBroker runs every agent of the cluster with a broker.
func withBroker(c *cluster) { c.broker = true }

// sleeper is a workload that runs until stopped.
func sleeper(name string, nodes ...string) workload {
	return workload{name: name, command: []string{"busybox", "sleep", "1000000"}, nodes: nodes}
}

// ---- a node ----

func (n *node) String() string { return n.name }

// exec runs a command in the node's container.
func (n *node) exec(args ...string) (string, error) {
	return n.c.docker(append([]string{"exec", n.container}, args...)...)
}

// nodeCLI runs `atoll node ...` on the node, against its agent's socket.
func (n *node) nodeCLI(args ...string) (string, error) {
	return n.exec(append(append([]string{"/atoll", "node"}, args...), "--data", "/data")...)
}

func (n *node) mustNodeCLI(args ...string) string {
	n.c.t.Helper()
	out, err := n.nodeCLI(args...)
	if err != nil {
		n.c.t.Fatal(err)
	}
	return out
}

// wlStatus is a workload in `atoll node status -o json`.
type wlStatus struct {
	Name     string `json:"name"`
	Runtime  string `json:"runtime"`
	State    string `json:"state"`
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
	Reason   string `json:"reason"`
}

// nodeInfo is `atoll node info -o json`.
type nodeInfo struct {
	Name            string `json:"name"`
	HubConnected    bool   `json:"hubConnected"`
	StoredRevision  uint64 `json:"storedRevision"`
	AppliedRevision uint64 `json:"appliedRevision"`
}

func (n *node) status() (map[string]wlStatus, error) {
	out, err := n.nodeCLI("status", "-o", "json")
	if err != nil {
		return nil, err
	}
	var ws []wlStatus
	if err := json.Unmarshal([]byte(out), &ws); err != nil {
		return nil, fmt.Errorf("%s: node status: %v: %q", n.name, err, out)
	}
	m := map[string]wlStatus{}
	for _, w := range ws {
		m[w.Name] = w
	}
	return m, nil
}

func (n *node) mustStatus() map[string]wlStatus {
	n.c.t.Helper()
	s, err := n.status()
	if err != nil {
		n.c.t.Fatal(err)
	}
	return s
}

func (n *node) info() (nodeInfo, error) {
	var i nodeInfo
	out, err := n.nodeCLI("info", "-o", "json")
	if err != nil {
		return i, err
	}
	err = json.Unmarshal([]byte(out), &i)
	return i, err
}

func (n *node) events() ([]event, error) {
	out, err := n.nodeCLI("events", "-o", "json")
	if err != nil {
		return nil, err
	}
	var evs []event
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		return nil, fmt.Errorf("%s: node events: %v", n.name, err)
	}
	return evs, nil
}

// waitReady waits until the node's agent answers on its socket.
func (n *node) waitReady() {
	n.c.t.Helper()
	atolltest.WaitFor(n.c.t, readyTimeout, func() error {
		_, err := n.info()
		return err
	})
}

// waitRunning waits until each named workload is running on the node and
// returns their statuses.
func (n *node) waitRunning(names ...string) map[string]wlStatus {
	n.c.t.Helper()
	var st map[string]wlStatus
	atolltest.WaitFor(n.c.t, convergeTimeout, func() error {
		var err error
		if st, err = n.status(); err != nil {
			return err
		}
		for _, name := range names {
			w, ok := st[name]
			if !ok || w.State != "running" {
				return fmt.Errorf("%s: %s is %+v", n.name, name, w)
			}
		}
		return nil
	})
	return st
}

// pids is the PID of every running exec workload on the node.
func (n *node) pids() map[string]int {
	n.c.t.Helper()
	out := map[string]int{}
	for name, w := range n.mustStatus() {
		if w.State == "running" && w.PID > 0 {
			out[name] = w.PID
		}
	}
	return out
}

// cutNet disconnects the node's container from the network: its packets
// go nowhere, and nothing tells the hub.
func (n *node) cutNet() {
	n.c.t.Helper()
	n.c.mustDocker("network", "disconnect", n.c.network, n.container)
	n.c.logf("%s: network cut (docker network disconnect)", n.name)
}

// healNet connects the node again, with its address.
func (n *node) healNet() {
	n.c.t.Helper()
	n.c.mustDocker("network", "connect", "--ip", n.ip, n.c.network, n.container)
	n.c.logf("%s: network healed", n.name)
}

// agentPID is the PID (in the container) of the running agent.
func (n *node) agentPID() (int, error) {
	out, err := n.exec("cat", "/tmp/agent.pid")
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return 0, fmt.Errorf("%s: /tmp/agent.pid: %q", n.name, out)
	}
	cmdline, err := n.exec("cat", fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(cmdline, "agent") {
		return 0, fmt.Errorf("%s: pid %d is not the agent (%q, %v)", n.name, pid, cmdline, err)
	}
	return pid, nil
}

// kill9 SIGKILLs the agent process (only it: its workloads live on) and
// waits until the supervising loop has started a new one that answers.
func (n *node) kill9() {
	n.c.t.Helper()
	var pid int
	atolltest.WaitFor(n.c.t, readyTimeout, func() error {
		var err error
		pid, err = n.agentPID()
		return err
	})
	if _, err := n.exec("kill", "-9", strconv.Itoa(pid)); err != nil {
		n.c.t.Fatal(err)
	}
	n.c.logf("%s: agent (pid %d) killed with SIGKILL", n.name, pid)
	atolltest.WaitFor(n.c.t, readyTimeout, func() error {
		p, err := n.agentPID()
		if err != nil {
			return err
		}
		if p == pid {
			return errors.New("the agent has not been restarted yet")
		}
		_, err = n.info()
		return err
	})
	n.c.logf("%s: agent back", n.name)
}

// reboot kills everything in the node's container and starts it again:
// the container's filesystem, and so the agent's store, persists.
func (n *node) reboot() {
	n.c.t.Helper()
	n.c.mustDocker("restart", "-t", "0", n.container)
	n.c.logf("%s: rebooted (docker restart)", n.name)
	n.waitReady()
	n.c.logf("%s: agent up after reboot", n.name)
}

// killWorkload SIGKILLs a workload's process, as a crash would.
func (n *node) killWorkload(name string) int {
	n.c.t.Helper()
	pid := n.mustStatus()[name].PID
	if pid <= 0 {
		n.c.t.Fatalf("%s: %s has no PID", n.name, name)
	}
	if _, err := n.exec("kill", "-9", strconv.Itoa(pid)); err != nil {
		n.c.t.Fatal(err)
	}
	n.c.logf("%s: workload %s (pid %d) killed", n.name, name, pid)
	return pid
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestOverlap(t *testing.T) {
	split := func(s string) []event {
		var out []event
		for _, id := range strings.Split(s, ",") {
			if id != "" {
				out = append(out, event{ID: id})
			}
		}
		return out
	}
	for _, tt := range []struct {
		all, page string
		want      int
	}{
		{"", "a,b", 0},
		{"a,b,c", "b,c,d", 2},
		{"a,b,c", "c", 1},
		{"a,b", "c,d", 0},
		{"a,b,c", "a,b,c,d", 3},
		{"a,b,a", "a,b,a,c", 3},
	} {
		if got := overlap(split(tt.all), split(tt.page)); got != tt.want {
			t.Errorf("overlap(%s, %s) = %d, want %d", tt.all, tt.page, got, tt.want)
		}
	}
}
