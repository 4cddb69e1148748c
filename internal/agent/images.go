package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"atoll.dev/atoll/internal/agent/artifact"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// DefaultImageCacheBytes is the artifact cache's disk budget when
// Config.ImageCacheBytes is zero.
const DefaultImageCacheBytes = 2 << 30

// largeArtifact is the size above which a download waits for the fetch
// window.
const largeArtifact = 1 << 20

// planImages is the hub's image store as the plan carries it: the archive
// of each image name the plan's container workloads use.
func planImages(p *wire.Plan) map[string]wire.ImageArtifact {
	out := map[string]wire.ImageArtifact{}
	if p == nil {
		return out
	}
	for _, w := range p.Workloads {
		if im := w.ImageArtifact; im != nil {
			out[im.Image] = *im
		}
	}
	return out
}

// imageOf is the archive w's image comes from, nil when there is none:
// the same image name, in a local override as in the hub's workload,
// comes from the same archive.
func imageOf(w manifest.Workload, images map[string]wire.ImageArtifact) *supervisor.Image {
	if w.Spec.Container == nil {
		return nil
	}
	im, ok := images[w.Spec.Container.Image]
	if !ok {
		return nil
	}
	return &supervisor.Image{Ref: im.Ref, Size: im.Size}
}

// wantedArtifacts lists the artifacts the desired state names, with their
// size when known (-1 for a WASM module). The caller holds a.mu.
func (a *Agent) wantedArtifacts() map[string]int64 {
	out := map[string]int64{}
	for _, w := range a.effective {
		if w.Spec.WASM != nil && strings.HasPrefix(w.Spec.WASM.Module, artifact.Prefix) {
			out[w.Spec.WASM.Module] = -1
		}
		if im := imageOf(w, a.images); im != nil {
			out[im.Ref] = im.Size
		}
	}
	return out
}

// cachedImages lists, sorted, the image archives of the plan that are in
// the cache. The caller holds a.mu.
func (a *Agent) cachedImages() []string {
	var out []string
	for _, im := range a.images {
		if a.hasArtifact(im.Ref) && !slices.Contains(out, im.Ref) {
			out = append(out, im.Ref)
		}
	}
	slices.Sort(out)
	return out
}

// hasArtifact reports whether ref is in the cache.
func (a *Agent) hasArtifact(ref string) bool {
	path, err := a.artifacts().Path(ref)
	if err != nil {
		return false
	}
	_, err = os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// evictArtifacts keeps the cache within its budget, removing the oldest
// artifacts no workload uses (an image the engine loaded stays in the
// engine).
func (a *Agent) evictArtifacts() {
	a.mu.Lock()
	wanted := a.wantedArtifacts()
	a.mu.Unlock()
	removed, err := a.artifacts().Evict(a.cfg.ImageCacheBytes, func(ref string) bool {
		_, ok := wanted[ref]
		return ok
	})
	if err != nil {
		a.log.Warn("artifact cache", "err", err)
	}
	for _, ref := range removed {
		a.log.Info("evicted from the artifact cache", "ref", ref, "budget", a.cfg.ImageCacheBytes)
	}
}

// FetchWindow is a daily window, in local time, outside which large
// artifacts (image archives) are not fetched. From == To means always.
type FetchWindow struct {
	From, To time.Duration // since midnight
}

// ParseFetchWindow reads "HH:MM-HH:MM" (local time; it may span midnight,
// as 22:00-05:00).
func ParseFetchWindow(s string) (FetchWindow, error) {
	from, to, ok := strings.Cut(s, "-")
	var w FetchWindow
	var err error
	if ok {
		if w.From, err = parseClock(from); err == nil {
			w.To, err = parseClock(to)
		}
	}
	if !ok || err != nil {
		return FetchWindow{}, fmt.Errorf("fetch window %q: want HH:MM-HH:MM in local time, such as 01:00-05:00", s)
	}
	return w, nil
}

func parseClock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, err
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// Open reports whether t falls in the window.
func (w FetchWindow) Open(t time.Time) bool {
	if w.From == w.To {
		return true
	}
	now := time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second
	if w.From < w.To {
		return now >= w.From && now < w.To
	}
	return now >= w.From || now < w.To
}

func (w FetchWindow) String() string {
	hm := func(d time.Duration) string { return fmt.Sprintf("%02d:%02d", int(d.Hours()), int(d.Minutes())%60) }
	return hm(w.From) + "-" + hm(w.To)
}

// fetchHold says why image archives are not fetched now, "" when they are.
func (a *Agent) fetchHold() string {
	if a.window == nil || a.window.Open(time.Now()) {
		return ""
	}
	return "image downloads wait for the fetch window " + a.window.String() + " (local time)"
}
