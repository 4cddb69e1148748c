package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// DefaultPullTimeout bounds a pull from a registry when Config.PullTimeout
// is zero.
const DefaultPullTimeout = 10 * time.Minute

// ensureImage makes the engine have the image of c: loaded from c.Archive
// unless this driver loaded that very archive before and the engine still
// has the image (so a workload restart does not load it again, and an
// archive pushed anew under the same name is loaded), else, without an
// archive, pulled from its registry when the engine lacks it.
func (d *Driver) ensureImage(ctx context.Context, image, archive string) error {
	_, err := d.api.ImageInspect(ctx, image)
	present := err == nil
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("image %s: %w", image, err)
	}
	if archive != "" {
		marker := filepath.Join(d.cfg.StateDir, "loaded", filepath.Base(archive))
		if _, err := os.Stat(marker); err == nil && present {
			return nil
		}
		if err := d.load(ctx, image, archive); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(marker), 0o700); err != nil {
			return fmt.Errorf("image %s: %w", image, err)
		}
		return os.WriteFile(marker, nil, 0o600)
	}
	if present {
		return nil
	}
	return d.pull(ctx, image)
}

// load has the engine load the archive at path, then checks that it held
// image.
func (d *Driver) load(ctx context.Context, image, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load image %s: %w", image, err)
	}
	defer f.Close()
	res, err := d.api.ImageLoad(ctx, f, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("load image %s from its archive: %w", image, err)
	}
	defer res.Close()
	if err := streamError(res); err != nil {
		return fmt.Errorf("load image %s from its archive: the engine says: %w", image, err)
	}
	if _, err := d.api.ImageInspect(ctx, image); err != nil {
		return fmt.Errorf("load image %s: the archive was loaded but the engine has no image of that name (%v): push an archive saved under this name", image, err)
	}
	return nil
}

// pull has the engine pull image from its registry, within PullTimeout.
func (d *Driver) pull(ctx context.Context, image string) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.PullTimeout)
	defer cancel()
	res, err := d.api.ImagePull(ctx, image, client.ImagePullOptions{})
	if err == nil {
		for msg, merr := range res.JSONMessages(ctx) {
			if merr != nil {
				err = merr
				break
			}
			if msg.Error != nil {
				err = msg.Error
				break
			}
		}
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("image %s is not on this node nor in the hub's image store, and pulling it from its registry did not finish within %v", image, d.cfg.PullTimeout)
	default:
		return fmt.Errorf("image %s is not on this node nor in the hub's image store (atoll image push), and pulling it from its registry failed: %w", image, err)
	}
}

// streamError reads an engine's JSON message stream to its end and
// returns the first error it reports.
func streamError(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var msg jsonstream.Message
		err := dec.Decode(&msg)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if msg.Error != nil {
			return msg.Error
		}
	}
}
