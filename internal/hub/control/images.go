package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/artifacts"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/wire"
)

// PushImage records req.Names as images whose archive is the artifact
// req.Ref (uploaded before), replacing what those names meant before, and
// replans: every node whose container workloads use one of the names gets
// the archive in its plan. It returns the names as stored.
func (c *Controller) PushImage(ctx context.Context, req api.ImagePush) ([]api.Image, error) {
	if len(req.Names) == 0 {
		return nil, api.Errorf(api.ErrInvalid, "push image: no image names (the archive's manifest names none: tag the image before saving it)")
	}
	for _, n := range req.Names {
		if n == "" || strings.ContainsAny(n, " \t\r\n") {
			return nil, api.Errorf(api.ErrInvalid, "push image: %q is not an image name (host/name:tag, no whitespace)", n)
		}
	}
	if !artifacts.ValidRef(req.Ref) {
		return nil, api.Errorf(api.ErrInvalid, "push image: %q: %v", req.Ref, artifacts.ErrBadRef)
	}
	if c.artifacts == nil {
		return nil, errors.New("push image: this hub has no artifact store")
	}
	size, ok, err := c.artifacts.Size(ctx, req.Ref)
	if err != nil {
		return nil, fmt.Errorf("push image: %w", err)
	}
	if !ok {
		return nil, api.Errorf(api.ErrNotFound, "push image: artifact %s is not in the hub's artifact store (upload it first: PUT /v1/artifacts/%s)", req.Ref, req.Ref)
	}
	now := c.clock.Now()
	var out []api.Image
	_, _, err = c.store.Images.Update(ctx, intent.ImagesKey, func(cur intent.Images, _ bool) (intent.Images, bool, error) {
		out = out[:0]
		kept := slices.DeleteFunc(slices.Clone(cur.Images), func(im intent.Image) bool { return slices.Contains(req.Names, im.Name) })
		for _, n := range req.Names {
			im := intent.Image{Name: n, Ref: req.Ref, Size: size, Pushed: now}
			kept = append(kept, im)
			out = append(out, api.Image{Name: im.Name, Ref: im.Ref, Size: im.Size, Pushed: im.Pushed, Nodes: []string{}})
		}
		slices.SortFunc(kept, func(a, b intent.Image) int { return strings.Compare(a.Name, b.Name) })
		return intent.Images{Images: kept}, true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("push image: %w", err)
	}
	return out, c.Reconcile(ctx, nil)
}

// Images lists the image store, by name, with the nodes whose last status
// reports the archive in their cache.
func (c *Controller) Images(ctx context.Context) ([]api.Image, error) {
	ims, err := c.images(ctx)
	if err != nil {
		return nil, err
	}
	sts, err := c.store.Statuses.All(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(ims))
	for _, im := range ims {
		a := api.Image{Name: im.Name, Ref: im.Ref, Size: im.Size, Pushed: im.Pushed, Nodes: []string{}}
		for _, st := range sts {
			if slices.Contains(st.Value.Images, im.Ref) {
				a.Nodes = append(a.Nodes, st.Key)
			}
		}
		slices.Sort(a.Nodes)
		out = append(out, a)
	}
	return out, nil
}

// images is the image store's index.
func (c *Controller) images(ctx context.Context) ([]intent.Image, error) {
	e, err := c.store.Images.Get(ctx, intent.ImagesKey)
	if errors.Is(err, intent.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return e.Value.Images, nil
}

// imageArtifacts is the image store by name, as plans carry it.
func (c *Controller) imageArtifacts(ctx context.Context) (map[string]wire.ImageArtifact, error) {
	ims, err := c.images(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]wire.ImageArtifact, len(ims))
	for _, im := range ims {
		out[im.Name] = wire.ImageArtifact{Image: im.Name, Ref: im.Ref, Size: im.Size}
	}
	return out, nil
}
