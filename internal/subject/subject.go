// Package subject checks and compares NATS subjects: dot-separated tokens,
// where a pattern may use "*" for one token and a final ">" for one or
// more. Workloads name the subjects the node forwards to the hub with it
// (spec.forward), and the node's outbox captures exactly those.
package subject

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Check reports what is wrong with s as a subject, or with wildcards as a
// pattern; nil when it is fine.
func Check(s string, wildcards bool) error {
	if s == "" {
		return errors.New("empty")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return errors.New("contains white space")
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return errors.New("has an empty token (\"..\", or a leading or trailing dot)")
		case (t == "*" || t == ">") && !wildcards:
			return fmt.Errorf("has the wildcard %q; a subject here is literal", t)
		case t == ">" && i != len(toks)-1:
			return errors.New("has \">\" before its last token")
		case t != "*" && t != ">" && strings.ContainsAny(t, "*>"):
			return fmt.Errorf("token %q mixes a wildcard with other characters", t)
		}
	}
	return nil
}

// CheckForward reports what is wrong with p as a subject pattern a node
// forwards: a valid pattern outside the namespaces NATS and atoll use
// themselves ($..., _INBOX..., atoll...), and not everything (">").
func CheckForward(p string) error {
	if err := Check(p, true); err != nil {
		return err
	}
	first, _, _ := strings.Cut(p, ".")
	switch {
	case p == ">":
		return errors.New("\">\" would forward everything, including NATS's own traffic; name a subtree such as sensors.>")
	case strings.HasPrefix(first, "$"), first == "_INBOX", first == "atoll":
		return fmt.Errorf("%q is reserved (for NATS or atoll); choose another first token", first)
	}
	return nil
}

// Matches reports whether pattern matches the literal subject s.
func Matches(pattern, s string) bool { return Covers(pattern, s) }

// Covers reports whether every subject b matches is also matched by a
// (both may be patterns).
func Covers(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i, t := range at {
		switch {
		case t == ">":
			return len(bt) > i
		case i >= len(bt):
			return false
		case bt[i] == ">":
			return false // b reaches deeper than a's single tokens
		case t == "*" || t == bt[i]:
		default:
			return false
		}
	}
	return len(at) == len(bt)
}

// Minimal returns the patterns, sorted, without duplicates and without
// any that another one covers: the set a stream can capture without
// overlapping subjects.
func Minimal(patterns []string) []string {
	var out []string
	for _, p := range patterns {
		covered := false
		for _, q := range patterns {
			if q != p && Covers(q, p) && !(Covers(p, q) && q > p) {
				covered = true
				break
			}
		}
		if !covered && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}
