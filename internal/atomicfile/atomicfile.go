// Package atomicfile writes small files whole or not at all, mode 0600: the
// data goes to a temporary file in the same directory, is synced, and then
// takes the file's name — replacing what was there (Replace) or only if
// nothing was (Create). Keys, certificates and configuration are written
// this way: a crash leaves the old file or the new one, never half of one.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Replace writes data to path, replacing the file there if any.
func Replace(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Create writes data to path, which must not exist: if it does, Create
// fails with an error matching fs.ErrExist and leaves it as it is.
func Create(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	return os.Link(tmp, path)
}

// writeTemp writes data to a new synced 0600 file beside path and returns
// its name.
func writeTemp(path string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}
