package fleet_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"atoll.dev/atoll/internal/atolltest/testimage"
	"atoll.dev/atoll/internal/driver/container"
	"atoll.dev/atoll/internal/wire"
)

// imageFleet is a fleet for container tests: it needs the engine, and it
// removes the containers of its nodes and the image ref once the agents
// are gone (the cleanup is registered before the fleet's, so it runs
// after it).
func imageFleet(t *testing.T, ref string) *fleet {
	t.Helper()
	ctx := context.Background()
	engine, err := testimage.Connect(ctx)
	testimage.Require(t, err)
	var f *fleet
	t.Cleanup(func() {
		defer engine.Close()
		for _, n := range f.nodes {
			list, err := engine.ContainerList(ctx, client.ContainerListOptions{
				All: true, Filters: make(client.Filters).Add("label", container.LabelOwner+"="+n.dir),
			})
			if err != nil {
				t.Errorf("cleanup: list containers: %v", err)
				continue
			}
			for _, c := range list.Items {
				if _, err := engine.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
					t.Errorf("cleanup: remove container %s: %v", c.ID, err)
				}
			}
		}
		_, _ = engine.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	f = newFleet(t)
	f.startHub()
	return f
}

// containerManifest is a container workload of image on node, running
// the test task with args.
func (f *fleet) containerManifest(name, image, node string, args ...string) string {
	f.t.Helper()
	doc := fmt.Sprintf("apiVersion: atoll.dev/v1\nkind: Workload\nmetadata:\n  name: %s\nspec:\n  runtime: container\n"+
		"  container:\n    image: %s\n    args: %s\n  placement:\n    nodes: [%s]\n", name, image, jsonText(args), node)
	p := filepath.Join(f.aux, name+".yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// imageArchive writes the test image's archive named ref, with filler
// random bytes, and returns its path, reference and size.
func (f *fleet) imageArchive(ref string, filler int) (path, artifactRef string, size int64) {
	f.t.Helper()
	b, err := testimage.Archive(ref, filler)
	if err != nil {
		f.t.Fatal(err)
	}
	path = filepath.Join(f.aux, "image.tar")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		f.t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return path, "sha256:" + hex.EncodeToString(sum[:]), int64(len(b))
}

// cursorSize is how many bytes of ref the node's download has kept (its
// cursor file), 0 when there is no download.
func (n *node) cursorSize(ref string) int64 {
	b, err := os.ReadFile(filepath.Join(n.dir, "artifacts", "partial", strings.TrimPrefix(ref, "sha256:")+".cursor"))
	if err != nil {
		return 0
	}
	var c struct{ Size int64 }
	if json.Unmarshal(b, &c) != nil {
		return 0
	}
	return c.Size
}

// waitDownloaded waits until the node's download of ref has kept at least
// want bytes, with the workload pending on it and saying so.
func (n *node) waitDownloaded(workload, image, ref string, want int64) {
	n.f.t.Helper()
	n.f.waitFor(0, func() error {
		m, err := n.statuses()
		if err != nil {
			return err
		}
		st := m[workload]
		if st.State != wire.StatePending || !strings.HasPrefix(st.Reason, "waiting for image "+image+" ("+ref+"): ") {
			return fmt.Errorf("%s is %s (%s); want pending for its image", workload, st.State, st.Reason)
		}
		if got := n.cursorSize(ref); got < want {
			return fmt.Errorf("%d bytes of %s downloaded; waiting for %d", got, ref, want)
		}
		return nil
	})
}

// TestImages_PushFetchRun: a container workload whose image is nowhere
// backs off with the engine's pull error (the agent does not crash); once
// the image's archive is pushed to the hub, the node fetches it, resumes
// after a cut where it stopped (counted in bytes on the link), loads it
// into the engine and runs the workload; `atoll get images` shows the node
// has it.
func TestImages_PushFetchRun(t *testing.T) {
	// A registry on a closed loopback port: a pull fails at once, and never
	// reaches outside the machine.
	ref := testimage.UniqueRef("127.0.0.1:1/atoll-test/app")
	f := imageFleet(t, ref)
	n := f.addNode("a", "")
	f.mustCLI("apply", "-f", f.containerManifest("app", ref, n.name, "sleep"))
	f.waitFor(0, func() error {
		m, err := n.statuses()
		if err != nil {
			return err
		}
		if st := m["app"]; st.State != wire.StateBackoff || !strings.Contains(st.Reason, "pulling it from its registry failed") {
			return fmt.Errorf("app is %s (%s); want backoff with the pull error", st.State, st.Reason)
		}
		return nil
	})
	if n.agent.exited() {
		t.Fatalf("the agent exited:\n%s", n.agent.output())
	}

	const filler = 8 << 20
	path, artifactRef, size := f.imageArchive(ref, filler)
	n.proxy.SetDownRate(4 << 20) // two seconds for the archive: time to cut it halfway
	r := f.mustCLI("image", "push", path)
	if want := fmt.Sprintf("image %s pushed (%s, %.1f MiB)\n", ref, artifactRef, float64(size)/(1<<20)); r.stdout != want {
		t.Fatalf("image push printed %q, want %q", r.stdout, want)
	}
	n.waitDownloaded("app", ref, artifactRef, size/2)
	n.proxy.Cut()
	kept := n.cursorSize(artifactRef)
	_, before := n.proxy.Bytes()
	n.proxy.SetDownRate(0)
	n.proxy.Restore()
	n.waitRunning("app")
	_, after := n.proxy.Bytes()
	missing, sent := size-kept, after-before
	t.Logf("archive %d bytes, %d kept at the cut, %d missing; %d bytes sent after the cut", size, kept, missing, sent)
	// What was sent after the cut is the missing part, plus the link's own
	// traffic (reconnect, heartbeats, status): never the archive again.
	if sent < missing || sent > missing+256<<10 {
		t.Errorf("after the cut the hub sent %d bytes; want the %d missing plus at most 256 KiB", sent, missing)
	}
	if !strings.Contains(n.agent.output(), "resuming artifact download") {
		t.Errorf("the agent did not log resuming the download:\n%s", n.agent.output())
	}
	want := []string{ref, artifactRef[:len("sha256:")+12], fmt.Sprintf("%.1f", float64(size)/(1<<20)), "MiB", n.name}
	f.waitFor(0, func() error {
		r := f.cli("get", "images")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 2 || strings.Join(strings.Fields(lines[1]), " ") != strings.Join(want, " ") {
			return fmt.Errorf("get images: %s; want one image: %q", r, want)
		}
		return nil
	})
}

// TestImages_CorruptDownloadRefetched: bytes that do not hash to the
// archive's reference are detected when the download completes, thrown
// away and fetched again; the workload runs from the good archive.
func TestImages_CorruptDownloadRefetched(t *testing.T) {
	ref := testimage.UniqueRef("127.0.0.1:1/atoll-test/corrupt")
	f := imageFleet(t, ref)
	n := f.addNode("a", "")
	path, artifactRef, size := f.imageArchive(ref, 2<<20)
	n.proxy.SetDownRate(2 << 20)
	f.mustCLI("image", "push", path)
	f.mustCLI("apply", "-f", f.containerManifest("app", ref, n.name, "sleep"))
	n.waitDownloaded("app", ref, artifactRef, 256<<10)
	n.proxy.Cut()
	// Flip a byte the download has kept, as a bad disk or a bad link would.
	partial := filepath.Join(n.dir, "artifacts", "partial", strings.TrimPrefix(artifactRef, "sha256:"))
	b, err := os.ReadFile(partial)
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 0xff
	if err := os.WriteFile(partial, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, before := n.proxy.Bytes()
	n.proxy.SetDownRate(0)
	n.proxy.Restore()
	n.waitRunning("app")
	_, after := n.proxy.Bytes()
	if out := n.agent.output(); !strings.Contains(out, "artifact digest mismatch") {
		t.Errorf("the agent did not report the digest mismatch:\n%s", out)
	}
	// The rest of the first try, then the whole archive again.
	if sent := after - before; sent < size {
		t.Errorf("after the corruption the hub sent %d bytes; the archive (%d) was not fetched again", sent, size)
	}
	f.waitFor(10*time.Second, func() error {
		if got := n.cursorSize(artifactRef); got != 0 {
			return fmt.Errorf("a download of %d bytes is left", got)
		}
		return nil
	})
}
