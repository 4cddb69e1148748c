package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"time"
)

// Quantity is a Kubernetes-style quantity as written ("64Mi", "250m", "1.5").
// Normalize guarantees it parses; MemoryBytes and MilliCPU read it.
//
// The syntax is a decimal number (optional sign, digits, optional fraction)
// followed by at most one suffix: a binary multiple Ki Mi Gi Ti Pi Ei, a
// decimal multiple k M G T P E, m for thousandths, or an exponent such as e3.
type Quantity string

// UnmarshalJSON accepts a string or a bare JSON number, as Kubernetes does,
// so that "cpu": 0.5 and "cpu": "500m" both work.
func (q *Quantity) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("quantity: %w", err)
		}
		*q = Quantity(s)
		return nil
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*q = Quantity(b)
		return nil
	default:
		return fmt.Errorf("quantity: %s is neither a string nor a number", b)
	}
}

// Errors from quantity parsing; Bytes and Millis wrap them.
var (
	errQuantitySyntax   = errors.New("not a number with an optional suffix")
	errQuantityNegative = errors.New("must not be negative")
	errQuantityFraction = errors.New("not a whole number")
	errQuantityRange    = errors.New("out of range")
)

// maxQuantityLen bounds the text parsed, so that hostile input cannot make
// the big-number arithmetic expensive. No sensible quantity comes close.
const maxQuantityLen = 64

// binaryShift and decimalExp map the quantity suffixes to their multipliers.
var (
	binaryShift = map[string]uint{"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
	decimalExp  = map[string]int{"": 0, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
)

// Bytes returns q as a whole number of bytes.
func (q Quantity) Bytes() (int64, error) {
	return q.scaled(1)
}

// Millis returns q in thousandths (millicores, for CPU). A quantity finer
// than one thousandth is an error.
func (q Quantity) Millis() (int64, error) {
	return q.scaled(1000)
}

// scaled returns q multiplied by factor, which must give a whole number that
// fits in an int64.
func (q Quantity) scaled(factor int64) (int64, error) {
	r, err := parseQuantity(string(q))
	if err != nil {
		return 0, fmt.Errorf("quantity %q: %w", string(q), err)
	}
	if r.Sign() < 0 {
		return 0, fmt.Errorf("quantity %q: %w", string(q), errQuantityNegative)
	}
	r.Mul(r, new(big.Rat).SetInt64(factor))
	if !r.IsInt() {
		return 0, fmt.Errorf("quantity %q: %w", string(q), errQuantityFraction)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("quantity %q: %w", string(q), errQuantityRange)
	}
	return r.Num().Int64(), nil
}

// parseQuantity returns the exact value of s.
func parseQuantity(s string) (*big.Rat, error) {
	if s == "" || len(s) > maxQuantityLen {
		return nil, errQuantitySyntax
	}
	i := 0
	neg := false
	if s[0] == '+' || s[0] == '-' {
		neg = s[0] == '-'
		i++
	}
	start := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	whole := s[start:i]
	frac := ""
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		frac = s[fs:i]
	}
	if whole == "" && frac == "" {
		return nil, errQuantitySyntax
	}
	mant, ok := new(big.Int).SetString(whole+frac, 10)
	if !ok {
		return nil, errQuantitySyntax
	}
	exp := -len(frac)
	suffix := s[i:]
	var shift uint
	if sh, ok := binaryShift[suffix]; ok {
		shift = sh
	} else if e, ok := decimalExp[suffix]; ok {
		exp += e
	} else if e, ok := parseExponent(suffix); ok {
		exp += e
	} else {
		return nil, errQuantitySyntax
	}
	r := new(big.Rat).SetInt(mant)
	if shift > 0 {
		r.Mul(r, new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), shift)))
	}
	pow := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
	if exp > 0 {
		r.Mul(r, new(big.Rat).SetInt(pow))
	} else if exp < 0 {
		r.Quo(r, new(big.Rat).SetInt(pow))
	}
	if neg {
		r.Neg(r)
	}
	return r, nil
}

// parseExponent reads a decimal exponent suffix ("e3", "E-2"), at most three
// digits long.
func parseExponent(s string) (int, bool) {
	if len(s) < 2 || (s[0] != 'e' && s[0] != 'E') {
		return 0, false
	}
	digits := s[1:]
	if digits[0] == '+' || digits[0] == '-' {
		digits = digits[1:]
	}
	if digits == "" || len(digits) > 3 {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if !isDigit(digits[i]) {
			return 0, false
		}
	}
	e, err := strconv.Atoi(s[1:])
	if err != nil {
		return 0, false
	}
	return e, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// Duration is a Go duration written as a string ("100ms", "5m"). In JSON it
// is that string too, as time.Duration.String formats it ("5m0s").
type Duration struct{ time.Duration }

// durationExamples is appended to every message about a malformed duration.
const durationExamples = "examples: 100ms, 30s, 5m"

// MarshalJSON writes the duration as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON reads a string accepted by time.ParseDuration. Numbers are
// rejected: a bare 30 has no unit.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s is not a string (%s)", b, durationExamples)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (%s): %w", s, durationExamples, err)
	}
	d.Duration = v
	return nil
}

// dur returns a *Duration holding v.
func dur(v time.Duration) *Duration { return &Duration{v} }

// MemoryBytes returns the declared memory in bytes, 0 when undeclared (or
// invalid, which Normalize rules out).
func (r Resources) MemoryBytes() int64 {
	if r.Memory == "" {
		return 0
	}
	n, err := r.Memory.Bytes()
	if err != nil {
		return 0
	}
	return n
}

// MilliCPU returns the declared CPU in thousandths of a core, 0 when
// undeclared (or invalid, which Normalize rules out).
func (r Resources) MilliCPU() int64 {
	if r.CPU == "" {
		return 0
	}
	n, err := r.CPU.Millis()
	if err != nil {
		return 0
	}
	return n
}
