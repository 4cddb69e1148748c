package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"atoll.dev/atoll/internal/agent/localapi"
)

// Logs copies the named workload's output to w: the last tail lines (all of
// it when tail < 0), then, with follow, new output as it is written until
// ctx is done. A followed stream ended by ctx is not an error. The error
// matches supervisor.ErrWorkloadNotFound (errors.Is) when the node has no
// such workload.
func (c *Local) Logs(ctx context.Context, name string, tail int, follow bool, w io.Writer) error {
	q := url.Values{}
	if tail >= 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	if follow {
		q.Set("follow", "true")
	}
	path := "/v1/workloads/" + url.PathEscape(name) + "/logs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.send(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		if follow && ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("logs of %s: %w", name, err)
	}
	// An error after the stream began arrives as a trailer.
	if msg := resp.Trailer.Get(localapi.TrailerError); msg != "" {
		return fmt.Errorf("logs of %s: %s", name, msg)
	}
	return nil
}
