package manifest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"atoll.dev/atoll/internal/subject"
)

// Defaults filled in by Normalize.
const (
	DefaultBackoffInitial    = 100 * time.Millisecond
	DefaultBackoffMax        = 5 * time.Minute
	DefaultBackoffResetAfter = 10 * time.Second
	DefaultHealthInterval    = 10 * time.Second
	DefaultHealthTimeout     = time.Second
	DefaultFailureThreshold  = 3
)

// Normalize validates every workload in ws and fills in defaults in place.
// It is for workloads that did not come through Decode, such as those the
// agent receives as JSON; a workload with an empty Source is named
// "document N" (N counting from 1) in errors. Duplicate metadata.name values
// within ws are errors. Every problem is reported, as FieldErrors; on error,
// ws may have been partly modified.
//
// Normalize is idempotent, and a normalized Workload round-trips through
// encoding/json unchanged (empty maps and lists become nil).
func Normalize(ws []Workload) error {
	var errs FieldErrors
	for i := range ws {
		c := &collector{source: ws[i].Source}
		if c.source == "" {
			c.source = docSource("", i+1)
		}
		normalize(&ws[i], c)
		sortBySchema(workloadType, c.errs)
		errs = append(errs, c.errs...)
	}
	errs = append(errs, duplicates(ws)...)
	return errs.asError()
}

// duplicates reports every workload whose name an earlier one already uses.
func duplicates(ws []Workload) FieldErrors {
	return duplicateNames(len(ws), func(i int) (string, string) { return ws[i].Metadata.Name, ws[i].Source })
}

// duplicates reports every workload, and every secret, whose name an
// earlier one of its kind already uses.
func (d Documents) duplicates() FieldErrors {
	errs := duplicates(d.Workloads)
	return append(errs, duplicateNames(len(d.Secrets), func(i int) (string, string) {
		return d.Secrets[i].Metadata.Name, d.Secrets[i].Source
	})...)
}

// duplicateNames reports every one of n documents whose name (doc returns
// its name and source) an earlier one already uses.
func duplicateNames(n int, doc func(i int) (name, source string)) FieldErrors {
	var errs FieldErrors
	first := make(map[string]string, n)
	for i := range n {
		name, src := doc(i)
		if name == "" {
			continue
		}
		if src == "" {
			src = docSource("", i+1)
		}
		if prev, ok := first[name]; ok {
			errs = append(errs, FieldError{Source: src, Path: "metadata.name",
				Msg: fmt.Sprintf("%q is already used by %s; names must be unique", name, prev)})
			continue
		}
		first[name] = src
	}
	return errs
}

func normalize(w *Workload, c *collector) {
	applyDefaults(w)
	validate(w, c)
}

// applyDefaults fills in what the manifest may leave out, and replaces empty
// maps and lists by nil so that the result survives a JSON round trip.
func applyDefaults(w *Workload) {
	s := &w.Spec
	w.Metadata.Labels = nilIfEmpty(w.Metadata.Labels)
	if s.Exec != nil {
		s.Exec.Command = nilIfNone(s.Exec.Command)
		s.Exec.Env = nilIfEmpty(s.Exec.Env)
	}
	if s.WASM != nil {
		s.WASM.Args = nilIfNone(s.WASM.Args)
		s.WASM.Env = nilIfEmpty(s.WASM.Env)
	}
	if s.Container != nil {
		s.Container.Command = nilIfNone(s.Container.Command)
		s.Container.Args = nilIfNone(s.Container.Args)
		s.Container.Env = nilIfEmpty(s.Container.Env)
		s.Container.Devices = nilIfNone(s.Container.Devices)
		if len(s.Container.Mounts) == 0 {
			s.Container.Mounts = nil
		}
		if len(s.Container.Ports) == 0 {
			s.Container.Ports = nil
		}
		for i := range s.Container.Ports {
			p := &s.Container.Ports[i]
			if p.HostPort == 0 {
				p.HostPort = p.ContainerPort
			}
			if p.Protocol == "" {
				p.Protocol = ProtocolTCP
			}
		}
	}
	s.Placement.NodeSelector = nilIfEmpty(s.Placement.NodeSelector)
	s.Placement.Nodes = nilIfNone(s.Placement.Nodes)
	s.Requires.Devices = nilIfNone(s.Requires.Devices)
	s.Forward = nilIfNone(s.Forward)
	if len(s.Secrets) == 0 {
		s.Secrets = nil
	}
	for i := range s.Secrets {
		s.Secrets[i].Env = nilIfEmpty(s.Secrets[i].Env)
		s.Secrets[i].Files = nilIfNone(s.Secrets[i].Files)
	}

	if s.Restart.Policy == "" {
		s.Restart.Policy = RestartAlways
	}
	b := &s.Restart.Backoff
	if b.Initial == nil {
		b.Initial = dur(DefaultBackoffInitial)
	}
	if b.Max == nil {
		b.Max = dur(DefaultBackoffMax)
	}
	if b.ResetAfter == nil {
		b.ResetAfter = dur(DefaultBackoffResetAfter)
	}

	if h := s.Health; h != nil {
		if h.Exec != nil {
			h.Exec.Command = nilIfNone(h.Exec.Command)
		}
		if h.HTTP != nil && h.HTTP.Path == "" {
			h.HTTP.Path = "/"
		}
		if h.Interval == nil {
			h.Interval = dur(DefaultHealthInterval)
		}
		if h.Timeout == nil {
			h.Timeout = dur(DefaultHealthTimeout)
		}
		if h.FailureThreshold == 0 {
			h.FailureThreshold = DefaultFailureThreshold
		}
		if h.StartPeriod == nil {
			h.StartPeriod = dur(0)
		}
	}
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func nilIfNone(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// Help texts quoted by several messages.
const (
	dnsLabelHelp   = "lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit"
	labelKeyHelp   = "an optional DNS subdomain and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
	labelValueHelp = "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, or empty"
	digestHelp     = "sha256: followed by 64 lowercase hex digits"
	runtimes       = "exec, wasm, container"
	policies       = RestartAlways + ", " + RestartOnFailure + ", " + RestartNever
)

// validate checks the meaning of a decoded, defaulted workload.
func validate(w *Workload, c *collector) {
	checkHeader(c, w.APIVersion, w.Kind, KindWorkload, w.Metadata)
	s := &w.Spec
	checkRuntime(c, s)
	if s.Exec != nil {
		checkCommand(c, "spec.exec.command", s.Exec.Command)
		checkEnv(c, "spec.exec.env", s.Exec.Env)
	}
	if s.WASM != nil {
		checkModule(c, "spec.wasm.module", s.WASM.Module)
		checkEnv(c, "spec.wasm.env", s.WASM.Env)
	}
	if s.Container != nil {
		checkContainer(c, s.Container)
	}
	checkResources(c, s.Resources)
	checkRestart(c, s.Restart)
	checkSecretRefs(c, s)
	if s.Health != nil {
		checkHealth(c, s.Health)
	}
	checkPlacement(c, "spec.placement", s.Placement)
	for i, d := range s.Requires.Devices {
		if d == "" {
			c.add(index("spec.requires.devices", i), "must not be empty")
		}
	}
	for i, f := range s.Forward {
		p := index("spec.forward", i)
		if err := subject.CheckForward(f); err != nil {
			c.add(p, "%q is not a subject to forward: %v (a NATS subject, tokens separated by dots, \"*\" for one token, a final \">\" for the rest)", f, err)
		} else if slices.Contains(s.Forward[:i], f) {
			c.add(p, "%q is listed twice", f)
		}
	}
}

// checkHeader checks apiVersion, kind (which must be want) and metadata.
func checkHeader(c *collector, apiVersion, kind, want string, m Metadata) {
	switch apiVersion {
	case APIVersion:
	case "":
		c.add("apiVersion", "required (%s)", APIVersion)
	default:
		c.add("apiVersion", "%q is not supported; use %s", apiVersion, APIVersion)
	}
	switch kind {
	case want:
	case "":
		c.add("kind", "required (%s)", want)
	default:
		c.add("kind", "%q is not supported; use %s", kind, want)
	}
	switch {
	case m.Name == "":
		c.add("metadata.name", "required (a DNS label: %s)", dnsLabelHelp)
	case !isDNSLabel(m.Name):
		c.add("metadata.name", "%q is not a DNS label (%s)", m.Name, dnsLabelHelp)
	}
	checkLabels(c, "metadata.labels", m.Labels)
}

// checkPlacement checks a selector and a list of node names.
func checkPlacement(c *collector, path string, p Placement) {
	checkLabels(c, path+".nodeSelector", p.NodeSelector)
	seen := make(map[string]bool, len(p.Nodes))
	for i, n := range p.Nodes {
		p := index(path+".nodes", i)
		switch {
		case !isDNSLabel(n):
			c.add(p, "%q is not a node name (a DNS label: %s)", n, dnsLabelHelp)
		case seen[n]:
			c.add(p, "%q is listed twice", n)
		}
		seen[n] = true
	}
}

// sections lists the runtimes, each of which has a spec section of its name.
var sections = []Runtime{RuntimeExec, RuntimeWASM, RuntimeContainer}

func checkRuntime(c *collector, s *WorkloadSpec) {
	set := map[Runtime]bool{
		RuntimeExec:      s.Exec != nil,
		RuntimeWASM:      s.WASM != nil,
		RuntimeContainer: s.Container != nil,
	}
	switch s.Runtime {
	case RuntimeExec, RuntimeWASM, RuntimeContainer:
	case "":
		c.add("spec.runtime", "required (one of %s)", runtimes)
		return
	default:
		c.add("spec.runtime", "%q is not one of %s", s.Runtime, runtimes)
		return
	}
	for _, r := range sections {
		p := "spec." + string(r)
		switch {
		case r == s.Runtime && !set[r]:
			c.add(p, "required when spec.runtime is %s", s.Runtime)
		case r != s.Runtime && set[r]:
			c.add(p, "set but spec.runtime is %s", s.Runtime)
		}
	}
}

func checkCommand(c *collector, path string, cmd []string) {
	if len(cmd) == 0 {
		c.add(path, `required (a list such as ["/usr/bin/app", "--flag"])`)
		return
	}
	if cmd[0] == "" {
		c.add(index(path, 0), "the program must not be empty")
	}
}

func checkEnv(c *collector, path string, env map[string]string) {
	for _, k := range sortedKeys(env) {
		checkEnvName(c, key(path, k), k)
		if strings.ContainsRune(env[k], 0) {
			c.add(key(path, k), "the value must not contain NUL")
		}
	}
}

func checkEnvName(c *collector, path, name string) {
	if name == "" || strings.ContainsAny(name, "=\x00") {
		c.add(path, "%q is not an environment variable name (non-empty, without '=' or NUL)", name)
	}
}

func checkModule(c *collector, path, m string) {
	switch {
	case m == "":
		c.add(path, "required (a file path or %s)", digestHelp)
	case strings.HasPrefix(m, "sha256:"):
		if !isLowerHex(m[len("sha256:"):], 64) {
			c.add(path, "%q is not a valid digest (%s)", m, digestHelp)
		}
	case strings.ContainsRune(m, 0), hasScheme(m):
		c.add(path, "%q is neither a file path nor a digest (%s)", m, digestHelp)
	}
}

// hasScheme reports whether m starts like "https:" or "sha512:" rather than
// like a path.
func hasScheme(m string) bool {
	colon := strings.IndexByte(m, ':')
	return colon > 0 && !strings.ContainsRune(m[:colon], '/')
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(isDigit(s[i]) || (s[i] >= 'a' && s[i] <= 'f')) {
			return false
		}
	}
	return true
}

const (
	memoryHelp = "a number of bytes with an optional suffix Ki, Mi, Gi, Ti, Pi, Ei or k, M, G, T, P, E; examples: 128Mi, 1Gi, 500M"
	cpuHelp    = "a number of cores with an optional suffix m for thousandths; examples: 250m, 0.5, 2"
)

func checkResources(c *collector, r Resources) {
	if r.Memory != "" {
		if _, err := r.Memory.Bytes(); err != nil {
			p := "spec.resources.memory"
			switch {
			case errors.Is(err, errQuantitySyntax):
				c.add(p, "%q is not a quantity (%s)", r.Memory, memoryHelp)
			case errors.Is(err, errQuantityNegative):
				c.add(p, "%q must not be negative", r.Memory)
			case errors.Is(err, errQuantityFraction):
				c.add(p, "%q: memory must be a whole number of bytes", r.Memory)
			default:
				c.add(p, "%q is too large", r.Memory)
			}
		}
	}
	if r.CPU != "" {
		if _, err := r.CPU.Millis(); err != nil {
			p := "spec.resources.cpu"
			switch {
			case errors.Is(err, errQuantitySyntax):
				c.add(p, "%q is not a quantity (%s)", r.CPU, cpuHelp)
			case errors.Is(err, errQuantityNegative):
				c.add(p, "%q must not be negative", r.CPU)
			case errors.Is(err, errQuantityFraction):
				c.add(p, "%q is finer than 1m (a thousandth of a core)", r.CPU)
			default:
				c.add(p, "%q is too large", r.CPU)
			}
		}
	}
}

func checkRestart(c *collector, r Restart) {
	switch r.Policy {
	case RestartAlways, RestartOnFailure, RestartNever:
	default:
		c.add("spec.restart.policy", "%q is not one of %s", r.Policy, policies)
	}
	const p = "spec.restart.backoff"
	b := r.Backoff
	ok := checkNonNegative(c, p+".initial", b.Initial)
	ok = checkNonNegative(c, p+".max", b.Max) && ok
	checkNonNegative(c, p+".resetAfter", b.ResetAfter)
	if ok && b.Initial.Duration > b.Max.Duration && !c.isBad(p+".max") {
		c.add(p+".initial", "%s is longer than %s.max (%s)", b.Initial, p, b.Max)
	}
}

// checkNonNegative reports a negative duration; ok is false when d is
// negative or missing.
func checkNonNegative(c *collector, path string, d *Duration) (ok bool) {
	if d == nil {
		return false
	}
	if d.Duration < 0 {
		c.add(path, "%s must not be negative", d)
		return false
	}
	return true
}

func checkPositive(c *collector, path string, d *Duration) (ok bool) {
	if d == nil {
		return false
	}
	if d.Duration <= 0 {
		c.add(path, "must be positive, got %s", d)
		return false
	}
	return true
}

func checkHealth(c *collector, h *Health) {
	const p = "spec.health"
	var set []string
	if h.Exec != nil {
		set = append(set, "exec")
	}
	if h.HTTP != nil {
		set = append(set, "http")
	}
	if h.TCP != nil {
		set = append(set, "tcp")
	}
	switch len(set) {
	case 0:
		c.add(p, "needs exactly one check: exec, http or tcp")
	case 1:
	case 2:
		c.add(p, "%s and %s are both set; choose exactly one of exec, http, tcp", set[0], set[1])
	default:
		c.add(p, "exec, http and tcp are all set; choose exactly one")
	}
	if h.Exec != nil {
		checkCommand(c, p+".exec.command", h.Exec.Command)
	}
	if h.HTTP != nil {
		checkPort(c, p+".http.port", h.HTTP.Port)
		if !strings.HasPrefix(h.HTTP.Path, "/") {
			c.add(p+".http.path", "%q must start with \"/\"", h.HTTP.Path)
		}
	}
	if h.TCP != nil {
		checkPort(c, p+".tcp.port", h.TCP.Port)
	}
	interval := checkPositive(c, p+".interval", h.Interval)
	timeout := checkPositive(c, p+".timeout", h.Timeout)
	if interval && timeout && h.Timeout.Duration > h.Interval.Duration && !c.isBad(p+".interval") {
		c.add(p+".timeout", "%s is longer than %s.interval (%s)", h.Timeout, p, h.Interval)
	}
	if h.FailureThreshold < 1 {
		c.add(p+".failureThreshold", "must be at least 1, got %d", h.FailureThreshold)
	}
	checkNonNegative(c, p+".startPeriod", h.StartPeriod)
}

func checkPort(c *collector, path string, port int) {
	switch {
	case port == 0:
		c.add(path, "required (1-65535)")
	case port < 1 || port > 65535:
		c.add(path, "%d is not a port (1-65535)", port)
	}
}

// isDNSLabel reports whether s is an RFC 1123 label.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case isDigit(ch) || (ch >= 'a' && ch <= 'z'):
		case ch == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// isDNSSubdomain reports whether s is an RFC 1123 subdomain: dot-separated
// labels, at most 253 characters.
func isDNSSubdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !isDNSLabel(l) {
			return false
		}
	}
	return true
}

// isLabelName reports whether s is a Kubernetes label name or value (without
// the prefix): 1-63 alphanumerics, '-', '_', '.', alphanumeric at both ends.
func isLabelName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		alnum := isDigit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
		switch {
		case alnum:
		case (ch == '-' || ch == '_' || ch == '.') && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

func isLabelKey(k string) bool {
	prefix, name, found := strings.Cut(k, "/")
	if !found {
		return isLabelName(k)
	}
	return isDNSSubdomain(prefix) && isLabelName(name)
}

func checkLabels(c *collector, path string, labels map[string]string) {
	for _, k := range sortedKeys(labels) {
		p := key(path, k)
		switch {
		case k == "":
			c.add(p, "label key must not be empty")
		case !isLabelKey(k):
			c.add(p, "%s is not a valid label key (%s)", strconv.Quote(k), labelKeyHelp)
		}
		if v := labels[k]; v != "" && !isLabelName(v) {
			c.add(p, "%q is not a valid label value (%s)", v, labelValueHelp)
		}
	}
}

// IsDNSLabel reports whether s is an RFC 1123 label: what node, workload
// and secret names must be.
func IsDNSLabel(s string) bool { return isDNSLabel(s) }
