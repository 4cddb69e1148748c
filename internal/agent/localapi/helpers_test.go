package localapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/agent/localapi"
)

// unixClient is a plain HTTP client that dials socket, so the tests see the
// wire exactly as any client would.
func unixClient(t *testing.T, socket string) *http.Client {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// call sends one request and returns the status, body and header.
func call(t *testing.T, socket, method, path, body string) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://agent"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := unixClient(t, socket).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, b, resp.Header
}

// wantError checks that an answer is a JSON error with the given status
// whose message contains substr, and returns the decoded body.
func wantError(t *testing.T, code int, body []byte, h http.Header, wantCode int, substr string) localapi.ErrorResponse {
	t.Helper()
	if code != wantCode {
		t.Errorf("status = %d, want %d (body %s)", code, wantCode, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var er localapi.ErrorResponse
	if err := json.Unmarshal(body, &er); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if er.Error == "" || !strings.Contains(er.Error, substr) {
		t.Errorf("error = %q, want it to contain %q", er.Error, substr)
	}
	return er
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}
