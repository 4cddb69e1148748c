package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"atoll.dev/atoll/internal/atolltest/linkproxy"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/manifest"
)

// The image figures.
const (
	// imageNodes is how many agents receive the image.
	imageNodes = 10
	// imageLayer is the archive's one layer of random (incompressible)
	// bytes: a 20 MB image.
	imageLayer = 20_000_000
	// imageResumeRate slows the resume figure's link so that the bench
	// can cut it halfway.
	imageResumeRate = 8 << 20
	imageTimeout    = 5 * time.Minute
	imagePoll       = 10 * time.Millisecond
)

type imagesResult struct {
	size       int64         // the archive's bytes
	push       time.Duration // upload to the hub and record the name
	distribute time.Duration // push recorded → the archive verified in every node's cache
	down       int64         // bytes hub → nodes meanwhile, every link together
	// The resume figure, on one node.
	kept, missing, resent int64
}

// imageArchive is a docker-save archive named ref whose one layer holds
// imageLayer random bytes, and its artifact reference.
func imageArchive(ref string) ([]byte, string, error) {
	filler := make([]byte, imageLayer)
	_, _ = rand.Read(filler)
	write := func(w *tar.Writer, name string, data []byte) error {
		if err := w.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := w.Write(data)
		return err
	}
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	if err := write(lw, "filler", filler); err != nil {
		return nil, "", err
	}
	if err := lw.Close(); err != nil {
		return nil, "", err
	}
	diff := sha256.Sum256(layer.Bytes())
	config, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diff[:])}}})
	csum := sha256.Sum256(config)
	manifest, _ := json.Marshal([]map[string]any{{"Config": hex.EncodeToString(csum[:]) + ".json",
		"RepoTags": []string{ref}, "Layers": []string{"layer/layer.tar"}}})
	var archive bytes.Buffer
	aw := tar.NewWriter(&archive)
	for _, f := range []struct {
		name string
		data []byte
	}{{hex.EncodeToString(csum[:]) + ".json", config}, {"layer/layer.tar", layer.Bytes()}, {"manifest.json", manifest}} {
		if err := write(aw, f.name, f.data); err != nil {
			return nil, "", err
		}
	}
	if err := aw.Close(); err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(archive.Bytes())
	return archive.Bytes(), "sha256:" + hex.EncodeToString(sum[:]), nil
}

// imageNode is one agent of the image figures, behind its own proxy.
type imageNode struct {
	name string
	a    *agent
	px   *linkproxy.Proxy
}

// cached reports whether the node's cache holds ref, verified.
func (n imageNode) cached(ref string) bool {
	_, err := os.Stat(filepath.Join(n.a.data, "artifacts", "sha256", strings.TrimPrefix(ref, "sha256:")))
	return err == nil
}

// kept is how many bytes of ref the node's download has kept.
func (n imageNode) kept(ref string) int64 {
	b, err := os.ReadFile(filepath.Join(n.a.data, "artifacts", "partial", strings.TrimPrefix(ref, "sha256:")+".cursor"))
	if err != nil {
		return 0
	}
	var c struct{ Size int64 }
	_ = json.Unmarshal(b, &c)
	return c.Size
}

// measureImages starts a hub and imageNodes agents, each linked through
// its own proxy and without a container engine (so that the figure is the
// distribution, not the engine's load), applies a container workload to
// all of them, pushes a 20 MB image archive and times until every node's
// cache holds it; then pushes another for one node, cuts its link when
// half has arrived, and counts what the hub sends after the link is back.
func (h *harness) measureImages(ctx context.Context) (r imagesResult, err error) {
	hub, err := h.startHub(ctx)
	if err != nil {
		return r, err
	}
	noEngine := "unix://" + filepath.Join(h.tmp, "no-engine.sock")
	tok, err := hub.token(ctx)
	if err != nil {
		return r, err
	}
	nodes := make([]imageNode, imageNodes)
	for i := range nodes {
		px, err := linkproxy.Start(hub.natsAdr)
		if err != nil {
			return r, err
		}
		defer px.Close()
		name := h.name(fmt.Sprintf("img-%02d", i))
		data := h.dataDir(name)
		a, err := h.spawn(data, "agent", []string{"agent", "--data", data, "--name", name, "--hub", "nats://" + px.Addr(), "--token", tok,
			"--heartbeat", "1s", "--labels", "bench-images=" + h.runID, "--docker-host", noEngine})
		if err != nil {
			return r, err
		}
		nodes[i] = imageNode{name: name, a: a, px: px}
	}
	alive := func() error {
		if err := hub.alive(); err != nil {
			return err
		}
		for _, n := range nodes {
			if n.a.exited() {
				return fmt.Errorf("agent %s exited (%v)%s", n.name, n.a.err, n.a.logTail())
			}
		}
		return nil
	}
	if err := poll(ctx, 20*time.Millisecond, startTimeout, "every image node connected", alive, func() (bool, error) {
		for _, n := range nodes {
			if st, err := hub.node(ctx, n.name); err != nil || st.State != api.NodeConnected {
				return false, err
			}
		}
		return true, nil
	}); err != nil {
		return r, err
	}

	push := func(image, selector string) (string, error) {
		archive, ref, err := imageArchive(image)
		if err != nil {
			return "", err
		}
		r.size = int64(len(archive))
		ws, err := manifest.Decode("bench-images.yaml", fmt.Appendf(nil, `apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: %s
spec:
  runtime: container
  container: {image: %q}
  placement: {%s}
`, h.name(strings.NewReplacer("/", "-", ":", "-").Replace(image)), image, selector))
		if err != nil {
			return "", err
		}
		if err := hub.apply(ctx, ws); err != nil {
			return "", err
		}
		t0 := time.Now()
		cctx, cancel := context.WithTimeout(ctx, imageTimeout)
		defer cancel()
		if err := hub.api.PutArtifact(cctx, ref, bytes.NewReader(archive)); err != nil {
			return "", err
		}
		if _, err := hub.api.PushImage(cctx, api.ImagePush{Names: []string{image}, Ref: ref}); err != nil {
			return "", err
		}
		r.push = time.Since(t0)
		return ref, nil
	}

	var down0 int64
	for _, n := range nodes {
		_, d := n.px.Bytes()
		down0 += d
	}
	ref, err := push("bench/"+h.runID+":all", "nodeSelector: {bench-images: \""+h.runID+"\"}")
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	if err := poll(ctx, imagePoll, imageTimeout, "the archive in every node's cache", alive, func() (bool, error) {
		have := 0
		for _, n := range nodes {
			if n.cached(ref) {
				have++
			}
		}
		return have == len(nodes), fmt.Errorf("%d of %d nodes", have, len(nodes))
	}); err != nil {
		return r, err
	}
	r.distribute = time.Since(t0)
	for _, n := range nodes {
		_, d := n.px.Bytes()
		r.down += d
	}
	r.down -= down0

	one := nodes[0]
	one.px.SetDownRate(imageResumeRate)
	ref, err = push("bench/"+h.runID+":one", "nodes: ["+one.name+"]")
	if err != nil {
		return r, err
	}
	if err := poll(ctx, imagePoll, imageTimeout, "half the archive on the node", alive, func() (bool, error) {
		return one.kept(ref) >= r.size/2, nil
	}); err != nil {
		return r, err
	}
	one.px.Cut()
	r.kept = one.kept(ref)
	r.missing = r.size - r.kept
	_, before := one.px.Bytes()
	one.px.SetDownRate(0)
	one.px.Restore()
	if err := poll(ctx, imagePoll, imageTimeout, "the rest of the archive on the node", alive, func() (bool, error) {
		return one.cached(ref), nil
	}); err != nil {
		return r, err
	}
	_, after := one.px.Bytes()
	r.resent = after - before
	return r, nil
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func (r results) imagesRows() []row {
	im := r.images
	return []row{
		{
			figure: fmt.Sprintf("Images: push a %s image archive (random layer) → verified in the cache of all %d nodes", mb(im.size), imageNodes),
			value: fmt.Sprintf("%s (push %s); %s sent, %.2f × the archive per node", sec(im.distribute), sec(im.push),
				mb(im.down), float64(im.down)/float64(im.size)/imageNodes),
			nomad: "—",
		},
		{
			figure: "Images: link cut halfway through a download; bytes sent after it / bytes missing",
			value: fmt.Sprintf("%s / %s = %.3f (%s had arrived)", mb(im.resent), mb(im.missing),
				float64(im.resent)/float64(im.missing), mb(im.kept)),
			nomad: "—",
		},
	}
}

func (r results) imagesMethod(n int) string {
	return fmt.Sprintf(`%d. **Images.** A hub and %d agents, each agent's link through its own proxy,
   started with `+"`--heartbeat 1s`"+` and without a container engine (`+"`--docker-host`"+` on a
   socket that does not exist), so that the figure is the distribution itself,
   not the engine loading the image. A container workload naming the image is
   applied to all of them, then the bench, as `+"`atoll image push`"+` does, uploads a
   docker-save archive with one layer of %s random bytes and records its name.
   The time runs from the push's end until the archive is verified in every
   node's artifact cache (its file in DATA/artifacts/sha256, polled every %v);
   "sent" is what went down all %d links meanwhile. Then another such archive is
   pushed for one node whose link is slowed to %d MiB/s; when its download has
   kept half (its cursor file), the link is cut, the rate limit dropped and the
   link restored, and the bytes the hub sends until the archive is in the cache
   are divided by the bytes that were missing at the cut (1.0 would be exactly
   the missing part; 2.0 a download started over).
`, n, imageNodes, commas(imageLayer), imagePoll, imageNodes, imageResumeRate>>20)
}
