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
	case first == ">" || first == "*":
		return errors.New("starts with a wildcard, which would forward NATS's own traffic (replies, $JS) too; name a subtree such as sensors.>")
	case strings.HasPrefix(first, "$"), first == "_INBOX", first == "atoll":
		return fmt.Errorf("%q is reserved (for NATS or atoll); choose another first token", first)
	}
	return nil
}

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

// Capture returns the patterns a stream captures to hold every subject
// the given ones match, sorted: without duplicates, without any another
// one covers, and with every two that partly overlap (b.*.c and b.x.*:
// NATS refuses them in one stream) widened into one that covers both
// (b.*.*). Patterns with literal first tokens stay so.
func Capture(patterns []string) []string {
	out := slices.Clone(patterns)
	for changed := true; changed; {
		changed = false
		out = minimal(out)
	pairs:
		for i, a := range out {
			for _, b := range out[i+1:] {
				if overlap(a, b) {
					out = append(out, widen(a, b))
					changed = true
					break pairs
				}
			}
		}
	}
	return out
}

// minimal drops duplicates and the patterns another one covers.
func minimal(patterns []string) []string {
	var out []string
	for _, p := range patterns {
		covered := false
		for _, q := range patterns {
			if q != p && Covers(q, p) {
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

// overlap reports whether some subject matches both a and b.
func overlap(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		if i == len(at) || i == len(bt) {
			return len(at) == len(bt)
		}
		x, y := at[i], bt[i]
		switch {
		case x == ">" || y == ">":
			return true
		case x != y && x != "*" && y != "*":
			return false
		}
	}
}

// widen is the narrowest pattern of this shape covering two overlapping
// patterns: equal tokens kept, others "*", and ">" from where either
// has one.
func widen(a, b string) string {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	var out []string
	for i := range min(len(at), len(bt)) {
		x, y := at[i], bt[i]
		switch {
		case x == ">" || y == ">":
			return strings.Join(append(out, ">"), ".")
		case x == y:
			out = append(out, x)
		default:
			out = append(out, "*")
		}
	}
	return strings.Join(out, ".")
}
