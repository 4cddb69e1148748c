package manifest

import "slices"

// secretKeyHelp says what a key of a secret's data looks like.
const secretKeyHelp = "1-253 letters, digits, '-', '_' or '.', not \".\" or \"..\" (it names a file)"

// NormalizeSecrets validates every secret in ss and fills in defaults in
// place, as Normalize does for workloads. Messages never quote a value of
// spec.data.
func NormalizeSecrets(ss []Secret) error {
	var errs FieldErrors
	for i := range ss {
		c := &collector{source: ss[i].Source}
		if c.source == "" {
			c.source = docSource("", i+1)
		}
		normalizeSecret(&ss[i], c)
		sortBySchema(secretType, c.errs)
		errs = append(errs, c.errs...)
	}
	errs = append(errs, Documents{Secrets: ss}.duplicates()...)
	return errs.asError()
}

func normalizeSecret(s *Secret, c *collector) {
	s.Metadata.Labels = nilIfEmpty(s.Metadata.Labels)
	s.Spec.Placement.NodeSelector = nilIfEmpty(s.Spec.Placement.NodeSelector)
	s.Spec.Placement.Nodes = nilIfNone(s.Spec.Placement.Nodes)
	checkHeader(c, s.APIVersion, s.Kind, KindSecret, s.Metadata)
	if len(s.Spec.Data) == 0 {
		c.add("spec.data", "required (a mapping of keys to values, such as password: s3cret)")
	}
	for _, k := range sortedKeys(s.Spec.Data) {
		checkSecretKey(c, key("spec.data", k), k)
	}
	checkPlacement(c, "spec.placement", s.Spec.Placement)
}

// redactData replaces the decoder's messages about values of spec.data,
// which quote the value, by one that does not.
func redactData(errs FieldErrors) {
	for i, e := range errs {
		if parent(e.Path) == "spec.data" {
			errs[i].Msg = "expected a string (quote the value); the value is not shown"
		}
	}
}

// IsSecretKey reports whether k can be a key of a secret's data.
func IsSecretKey(k string) bool {
	if k == "" || len(k) > 253 || k == "." || k == ".." {
		return false
	}
	for i := 0; i < len(k); i++ {
		ch := k[i]
		if !(isDigit(ch) || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch == '-' || ch == '_' || ch == '.') {
			return false
		}
	}
	return true
}

func checkSecretKey(c *collector, path, k string) {
	if !IsSecretKey(k) {
		c.add(path, "%q is not a secret key (%s)", k, secretKeyHelp)
	}
}

// checkSecretRefs checks spec.secrets: names, variable names, keys, and
// that no variable is set twice.
func checkSecretRefs(c *collector, s *WorkloadSpec) {
	own := runtimeEnv(s)
	envFrom := map[string]string{} // variable → the path that sets it first
	var names []string
	for i, r := range s.Secrets {
		p := index("spec.secrets", i)
		switch {
		case r.Name == "":
			c.add(p+".name", "required (the metadata.name of a Secret)")
		case !isDNSLabel(r.Name):
			c.add(p+".name", "%q is not a secret name (a DNS label: %s)", r.Name, dnsLabelHelp)
		case slices.Contains(names, r.Name):
			c.add(p+".name", "%q is listed twice; list each secret once, with all its env and files", r.Name)
		}
		names = append(names, r.Name)
		if len(r.Env) == 0 && len(r.Files) == 0 {
			c.add(p, "needs env or files: nothing of secret %q would reach the workload", r.Name)
		}
		if s.Runtime == RuntimeContainer && len(r.Env) > 0 {
			c.add(p+".env", "not for container workloads: the container engine keeps a container's environment on disk; use files (mounted read-only at /run/secrets)")
		}
		for _, v := range sortedKeys(r.Env) {
			vp := key(p+".env", v)
			checkEnvName(c, vp, v)
			checkSecretKey(c, vp, r.Env[v])
			if _, ok := own[v]; ok {
				c.add(vp, "%s is also set in spec.%s.env; set it in one place", v, s.Runtime)
			} else if prev, ok := envFrom[v]; ok {
				c.add(vp, "%s is also set by %s", v, prev)
			}
			envFrom[v] = vp
		}
		for j, f := range r.Files {
			fp := index(p+".files", j)
			checkSecretKey(c, fp, f)
			if slices.Contains(r.Files[:j], f) {
				c.add(fp, "%q is listed twice", f)
			}
		}
	}
}

// runtimeEnv is the environment the workload's runtime section sets.
func runtimeEnv(s *WorkloadSpec) map[string]string {
	switch {
	case s.Exec != nil:
		return s.Exec.Env
	case s.WASM != nil:
		return s.WASM.Env
	case s.Container != nil:
		return s.Container.Env
	}
	return nil
}
