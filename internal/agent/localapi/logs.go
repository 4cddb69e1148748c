package localapi

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"os"
	"strconv"

	"atoll.dev/atoll/internal/httpjson"

	"atoll.dev/atoll/internal/logfile"
)

// TrailerError is the HTTP trailer that carries an error met after a log
// stream began, when the status can no longer say it.
const TrailerError = "Atoll-Error"

// logs serves GET /v1/workloads/{name}/logs?tail=N&follow=true: the last N
// lines (all of them without tail), then, with follow, new output as it is written,
// flushed write by write, until the client leaves or the server stops.
func (h *handler) logs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tail := -1
	if s := q.Get("tail"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("tail: %q is not a number of lines", s))
			return
		}
		tail = n
	}
	follow := false
	if s := q.Get("follow"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("follow: %q is not true or false", s))
			return
		}
		follow = b
	}
	path, err := h.node.LogPath(r.PathValue("name"))
	if err != nil {
		httpjson.WriteError(w, statusOf(err), err.Error())
		return
	}
	// Follow goes on from the size the file had before Tail read it. A line
	// written in the instant between the two may be sent twice; none is lost.
	end, err := fileSize(path)
	if err != nil {
		httpjson.WriteError(w, http.StatusInternalServerError, fmt.Sprintf("read log: %v", err))
		return
	}
	if tail < 0 {
		tail = math.MaxInt
	}
	data, err := logfile.Tail(path, tail)
	if errors.Is(err, fs.ErrNotExist) {
		// The workload has not written anything yet.
		data, err = nil, nil
	}
	if err != nil {
		httpjson.WriteError(w, http.StatusInternalServerError, fmt.Sprintf("read log: %v", err))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	fw := flushWriter{w: w, rc: http.NewResponseController(w)}
	if _, err := fw.Write(data); err != nil || !follow {
		return
	}
	err = logfile.Follow(r.Context(), path, end, fw, h.poll)
	switch {
	case r.Context().Err() != nil:
		// Either the client left, and reads no trailer, or the server is
		// stopping, which the client should hear about.
		w.Header().Set(http.TrailerPrefix+TrailerError, "log stream ended: the agent is stopping")
	case err != nil:
		w.Header().Set(http.TrailerPrefix+TrailerError, err.Error())
	}
}

// fileSize is the size of path, 0 when it does not exist yet.
func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// flushWriter sends every write to the client at once.
type flushWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.rc.Flush()
}
