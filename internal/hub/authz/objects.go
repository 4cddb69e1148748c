package authz

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"atoll.dev/atoll/internal/hub/api"
)

// objectNames returns "kind/name" of each object an apply call's body
// (POST .../{things}:apply: /v1/workloads:apply, /v1/secrets:apply)
// holds ("workload/web"), nil for other calls or a body that is not a list
// of objects. It reads at most api.MaxApplyBody+1 bytes ahead and gives
// the handler the same body, whole; nothing else of the body is kept.
func objectNames(r *http.Request) []string {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, ":apply") || r.Body == nil {
		return nil
	}
	head, err := io.ReadAll(io.LimitReader(r.Body, api.MaxApplyBody+1))
	r.Body = readCloser{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
	if err != nil {
		return nil
	}
	var objs []struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if json.Unmarshal(head, &objs) != nil {
		return nil
	}
	names := make([]string, 0, len(objs))
	for _, o := range objs {
		names = append(names, strings.ToLower(o.Kind)+"/"+o.Metadata.Name)
	}
	return names
}

// readCloser reads from one reader and closes another: the original body.
type readCloser struct {
	io.Reader
	io.Closer
}
