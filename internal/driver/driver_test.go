package driver_test

import (
	"errors"
	"testing"

	"atoll.dev/atoll/internal/driver"
)

func TestHandle_RoundTripAndRefusals(t *testing.T) {
	type state struct {
		ID string `json:"id"`
	}
	h, err := driver.NewHandle("exec", 2, state{ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	var got state
	if err := h.Decode("exec", 2, &got); err != nil || got.ID != "a" {
		t.Fatalf("Decode = %+v, %v", got, err)
	}
	for name, bad := range map[string]driver.Handle{
		"another driver":  {Driver: "wasm", Version: 2, State: h.State},
		"another version": {Driver: "exec", Version: 1, State: h.State},
		"garbage state":   {Driver: "exec", Version: 2, State: []byte("{")},
	} {
		if err := bad.Decode("exec", 2, &got); !errors.Is(err, driver.ErrBadHandle) {
			t.Errorf("%s: Decode = %v, want ErrBadHandle", name, err)
		}
	}
}
