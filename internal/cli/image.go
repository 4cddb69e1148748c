package cli

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/agent/artifact"
	"atoll.dev/atoll/internal/hub/api"
)

func newImageCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the hub's image store (images for nodes without a registry)",
	}
	hub := addHubFlag(e, cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "push FILE.tar",
		Short: "Store an image archive (docker save, or an OCI layout tarball) in the hub",
		Long: "Upload FILE.tar to the hub's artifact store and record the image names its\n" +
			"manifest holds (docker save: manifest.json RepoTags; OCI: index.json ref name\n" +
			"annotations). Nodes whose container workloads use one of those names fetch the\n" +
			"archive in the background, resumably, and load it into their engine.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hub.client()
			if err != nil {
				return err
			}
			ims, err := pushImage(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			for _, im := range ims {
				fmt.Fprintf(e.stdout, "image %s pushed (%s, %s)\n", im.Name, im.Ref, formatMiB(im.Size))
			}
			return nil
		},
	})
	return cmd
}

// imagePusher is the part of the hub client that takes images.
type imagePusher interface {
	PutArtifact(ctx context.Context, ref string, r io.Reader) error
	PushImage(ctx context.Context, req api.ImagePush) ([]api.Image, error)
}

// pushImage uploads the archive at path as an artifact and records its
// image names at the hub.
func pushImage(ctx context.Context, c imagePusher, path string) ([]api.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image push: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	names, err := archiveNames(io.TeeReader(f, h))
	if err != nil {
		return nil, fmt.Errorf("image push: %s: %w", path, err)
	}
	if _, err := io.Copy(h, f); err != nil { // the tar's padding after its last entry
		return nil, fmt.Errorf("image push: %w", err)
	}
	ref := artifact.Prefix + hex.EncodeToString(h.Sum(nil))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("image push: %w", err)
	}
	if err := c.PutArtifact(ctx, ref, f); err != nil {
		return nil, fmt.Errorf("image push: upload %s: %w", path, err)
	}
	ims, err := c.PushImage(ctx, api.ImagePush{Names: names, Ref: ref})
	if err != nil {
		return nil, fmt.Errorf("image push: %w", err)
	}
	return ims, nil
}

// Annotations of an OCI index naming an image: containerd's full name,
// else the OCI ref name.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// archiveNames reads an image archive to its end and returns the image
// names it holds: the RepoTags of a docker-archive manifest.json, else the
// names an OCI layout's index.json gives its manifests.
func archiveNames(r io.Reader) ([]string, error) {
	tr := tar.NewReader(r)
	var dockerManifest, ociIndex []byte
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar archive (an image archive is what docker save IMAGE -o FILE.tar writes): %w", err)
		}
		switch strings.TrimPrefix(hdr.Name, "./") {
		case "manifest.json":
			dockerManifest, err = io.ReadAll(io.LimitReader(tr, 4<<20))
		case "index.json":
			ociIndex, err = io.ReadAll(io.LimitReader(tr, 4<<20))
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", hdr.Name, err)
		}
	}
	var names []string
	switch {
	case dockerManifest != nil:
		var m []struct{ RepoTags []string }
		if err := json.Unmarshal(dockerManifest, &m); err != nil {
			return nil, fmt.Errorf("manifest.json: %w", err)
		}
		for _, im := range m {
			names = append(names, im.RepoTags...)
		}
	case ociIndex != nil:
		var idx struct {
			Manifests []struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"manifests"`
		}
		if err := json.Unmarshal(ociIndex, &idx); err != nil {
			return nil, fmt.Errorf("index.json: %w", err)
		}
		for _, m := range idx.Manifests {
			if n := m.Annotations[annotationContainerdName]; n != "" {
				names = append(names, n)
			} else if n := m.Annotations[annotationRefName]; n != "" {
				names = append(names, n)
			}
		}
	default:
		return nil, errors.New("no manifest.json or index.json: not an image archive (docker save IMAGE -o FILE.tar writes one)")
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) == 0 {
		return nil, errors.New("the archive names no image (tag it, then save it by name: docker save host/name:tag -o FILE.tar)")
	}
	return names, nil
}

// formatMiB prints a size in MiB with one decimal: 20.0 MiB.
func formatMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
