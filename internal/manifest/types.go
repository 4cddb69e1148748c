package manifest

// APIVersion is the only manifest API version this build understands.
const APIVersion = "atoll.dev/v1"

// KindWorkload is the kind of a workload document.
const KindWorkload = "Workload"

// KindSecret is the kind of a secret document.
const KindSecret = "Secret"

// Secret is named sensitive data the hub keeps encrypted and hands, sealed
// to each node's key, to the nodes it targets.
type Secret struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   Metadata   `json:"metadata"`
	Spec       SecretSpec `json:"spec"`

	// Source is as Workload.Source.
	Source string `json:"-"`
}

// SecretSpec is a secret's data and the nodes that may receive it.
type SecretSpec struct {
	// Data maps keys (file names: letters, digits, '-', '_', '.') to values.
	Data map[string]string `json:"data"`
	// Placement selects the nodes the secret may be delivered to, as a
	// workload's does; a workload on another node cannot start.
	Placement Placement `json:"placement,omitempty"`
}

// Workload is one declared unit: a process, a WASM module or a container.
type Workload struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Metadata   Metadata     `json:"metadata"`
	Spec       WorkloadSpec `json:"spec"`

	// Source says where the document came from ("file.yaml#2"); it is set by
	// the decoder and never serialised.
	Source string `json:"-"`
}

// Metadata names a document.
type Metadata struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Runtime names a workload runtime.
type Runtime string

// The runtimes a workload can name.
const (
	RuntimeExec      Runtime = "exec"
	RuntimeWASM      Runtime = "wasm"
	RuntimeContainer Runtime = "container"
)

// WorkloadSpec is the desired state of a workload.
type WorkloadSpec struct {
	Runtime   Runtime        `json:"runtime"`
	Exec      *ExecSpec      `json:"exec,omitempty"`
	WASM      *WASMSpec      `json:"wasm,omitempty"`
	Container *ContainerSpec `json:"container,omitempty"`
	// Priority orders admission and eviction: higher is more important.
	Priority  int       `json:"priority,omitempty"`
	Resources Resources `json:"resources,omitempty"`
	Restart   Restart   `json:"restart,omitempty"`
	Health    *Health   `json:"health,omitempty"`
	Placement Placement `json:"placement,omitempty"`
	Requires  Requires  `json:"requires,omitempty"`
	// Forward lists the subjects (NATS patterns: sensors.>, plant.*.temp)
	// the workload publishes on the node's local broker that the node
	// keeps in its outbox and forwards to the hub.
	Forward []string `json:"forward,omitempty"`
	// Secrets are the secrets the workload receives (see SecretRef).
	Secrets []SecretRef `json:"secrets,omitempty"`
}

// SecretRef delivers keys of one Secret to a workload: as environment
// variables (Env maps a variable name to a key of the secret) and as files
// (each key in Files becomes $ATOLL_SECRETS_DIR/<secret>/<key>, on tmpfs).
// Whether the keys exist is checked when the hub plans the workload, not
// here: the secret may be applied later.
type SecretRef struct {
	Name  string            `json:"name"`
	Env   map[string]string `json:"env,omitempty"`
	Files []string          `json:"files,omitempty"`
}

// ExecSpec runs a plain process.
type ExecSpec struct {
	Command    []string          `json:"command"`
	Env        map[string]string `json:"env,omitempty"`
	WorkingDir string            `json:"workingDir,omitempty"`
}

// WASMSpec runs a WASI preview 1 module with wazero.
type WASMSpec struct {
	// Module is a file path or "sha256:<hex>" of an artifact in the agent's cache.
	Module string            `json:"module"`
	Args   []string          `json:"args,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
}

// ContainerSpec runs an OCI container through the node's container engine,
// from an image in the hub's image store, on the node, or in its registry.
type ContainerSpec struct {
	Image string `json:"image"`
	// Command replaces the image's entrypoint, Args its command.
	Command []string          `json:"command,omitempty"`
	Args    []string          `json:"args,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Mounts  []Mount           `json:"mounts,omitempty"`
	// Ports publishes container ports on the node; empty with HostNetwork.
	Ports []Port `json:"ports,omitempty"`
	// HostNetwork runs the container in the node's network namespace.
	HostNetwork bool `json:"hostNetwork,omitempty"`
	// Devices are host device paths (/dev/video0) made available inside the
	// container at the same path.
	Devices    []string `json:"devices,omitempty"`
	Privileged bool     `json:"privileged,omitempty"`
	// User runs the container's process as this user ("1000", "1000:1000",
	// "app"); empty means the image's user.
	User string `json:"user,omitempty"`
}

// Mount binds a host path into a container.
type Mount struct {
	HostPath string `json:"hostPath"`
	Path     string `json:"path"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Port protocols.
const (
	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"
)

// Port publishes a container port on a port of the node.
type Port struct {
	ContainerPort int `json:"containerPort"`
	// HostPort defaults to ContainerPort.
	HostPort int `json:"hostPort,omitempty"`
	// Protocol is tcp (the default) or udp.
	Protocol string `json:"protocol,omitempty"`
}

// Resources are the declared needs of a workload, in Kubernetes quantity
// syntax. Empty means "not declared": the workload is admitted without
// reserving capacity and runs without a limit.
type Resources struct {
	Memory Quantity `json:"memory,omitempty"`
	CPU    Quantity `json:"cpu,omitempty"`
}

// Restart policies.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// Restart says when and how fast a stopped workload is started again.
type Restart struct {
	Policy  string  `json:"policy,omitempty"`
	Backoff Backoff `json:"backoff,omitempty"`
}

// Backoff is exponential: initial, doubled per consecutive failure, capped at
// max, and reset once the workload has run for resetAfter.
type Backoff struct {
	Initial    *Duration `json:"initial,omitempty"`
	Max        *Duration `json:"max,omitempty"`
	ResetAfter *Duration `json:"resetAfter,omitempty"`
}

// Health is a periodic check; failureThreshold consecutive failures restart
// the workload. Exactly one of Exec, HTTP, TCP is set.
type Health struct {
	Exec             *ExecCheck `json:"exec,omitempty"`
	HTTP             *HTTPCheck `json:"http,omitempty"`
	TCP              *TCPCheck  `json:"tcp,omitempty"`
	Interval         *Duration  `json:"interval,omitempty"`
	Timeout          *Duration  `json:"timeout,omitempty"`
	FailureThreshold int        `json:"failureThreshold,omitempty"`
	StartPeriod      *Duration  `json:"startPeriod,omitempty"`
}

// ExecCheck passes when the command exits 0.
type ExecCheck struct {
	Command []string `json:"command"`
}

// HTTPCheck passes on a 2xx or 3xx answer from 127.0.0.1:Port/Path.
type HTTPCheck struct {
	Port int    `json:"port"`
	Path string `json:"path,omitempty"`
}

// TCPCheck passes when 127.0.0.1:Port accepts a connection.
type TCPCheck struct {
	Port int `json:"port"`
}

// Placement selects the nodes a workload targets (used by the hub).
type Placement struct {
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	Nodes        []string          `json:"nodes,omitempty"`
}

// Requires lists what a node must have attached to run the workload.
type Requires struct {
	Devices []string `json:"devices,omitempty"`
}
