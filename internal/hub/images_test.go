package hub_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/hub"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/manifest"
)

// containerWorkload is a container workload of image on nodes.
func containerWorkload(name, image string, nodes ...string) manifest.Workload {
	return manifest.Workload{
		APIVersion: manifest.APIVersion, Kind: manifest.KindWorkload,
		Metadata: manifest.Metadata{Name: name},
		Spec: manifest.WorkloadSpec{
			Runtime:   manifest.RuntimeContainer,
			Container: &manifest.ContainerSpec{Image: image},
			Placement: manifest.Placement{Nodes: nodes},
		},
	}
}

// TestImages_PushPlansAndLists: pushing an archive names it in the plan of
// every node whose container workload uses one of its names (a new plan
// revision), and GET /v1/images shows the nodes whose status reports it.
func TestImages_PushPlansAndLists(t *testing.T) {
	h := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: hubtest.NewClock(time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC))})
	archive := "an image archive"
	sum := sha256.Sum256([]byte(archive))
	ref := "sha256:" + hex.EncodeToString(sum[:])
	h.apply(containerWorkload("app", "plant/app:1", "n1"), containerWorkload("other", "plant/other:1", "n1"))
	before := planHistory(t, h.NATSURL(), "n1")

	// Not uploaded yet: 404, saying what to do.
	push := api.ImagePush{Names: []string{"plant/app:1"}, Ref: ref}
	if code, body := h.do(http.MethodPost, "/v1/images", push); code != http.StatusNotFound ||
		!strings.Contains(string(body), "is not in the hub's artifact store (upload it first: PUT /v1/artifacts/"+ref+")") {
		t.Fatalf("push before upload = %d %s", code, body)
	}
	for _, bad := range []struct {
		req  api.ImagePush
		want string
	}{
		{api.ImagePush{Ref: ref}, "push image: no image names"},
		{api.ImagePush{Names: []string{"plant/app 1"}, Ref: ref}, `push image: \"plant/app 1\" is not an image name`},
		{api.ImagePush{Names: []string{"plant/app:1"}, Ref: "sha256:abc"}, `push image: \"sha256:abc\": not an artifact reference`},
	} {
		if code, body := h.do(http.MethodPost, "/v1/images", bad.req); code != http.StatusBadRequest || !strings.Contains(string(body), bad.want) {
			t.Errorf("push %+v = %d %s; want 400 with %q", bad.req, code, body, bad.want)
		}
	}

	if code, body := h.do(http.MethodPut, "/v1/artifacts/"+ref, archive); code != http.StatusNoContent {
		t.Fatalf("upload = %d %s", code, body)
	}
	code, body := h.do(http.MethodPost, "/v1/images", push)
	var pushed []api.Image
	if code != http.StatusOK || json.Unmarshal(body, &pushed) != nil || len(pushed) != 1 ||
		pushed[0].Name != "plant/app:1" || pushed[0].Ref != ref || pushed[0].Size != int64(len(archive)) {
		t.Fatalf("push = %d %s", code, body)
	}
	after := planHistory(t, h.NATSURL(), "n1")
	if len(after) != len(before)+1 {
		t.Fatalf("plan revisions %d → %d; want one more", len(before), len(after))
	}
	plan := after[len(after)-1]
	for _, pw := range plan.Workloads {
		got := pw.ImageArtifact
		switch pw.Workload.Metadata.Name {
		case "app":
			if got == nil || got.Image != "plant/app:1" || got.Ref != ref || got.Size != int64(len(archive)) {
				t.Errorf("app's image artifact = %+v", got)
			}
		default:
			if got != nil {
				t.Errorf("%s has an image artifact: %+v", pw.Workload.Metadata.Name, got)
			}
		}
	}

	// The node reports the archive in its cache.
	a := hubtest.NewAgent(t, h.NATSURL(), "n1", nil)
	a.Hello()
	a.Sync()
	st := a.Status()
	st.Images = []string{ref}
	st.Digest += "-images"
	a.SendStatus(st)
	waitFor(t, func() bool {
		var ims []api.Image
		h.get("/v1/images", &ims)
		return len(ims) == 1 && slices.Equal(ims[0].Nodes, []string{"n1"})
	}, "GET /v1/images does not show n1 with %s", ref)
	if code, body := h.do(http.MethodGet, "/v1/images?node=n1", nil); code != http.StatusBadRequest {
		t.Errorf("GET /v1/images?node= = %d %s; want 400", code, body)
	}
}
