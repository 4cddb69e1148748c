package trim_test

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/agent/trim"
)

// rssFile is this process's resident file-backed memory (RssFile of
// /proc/self/status), in kB.
func rssFile(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func TestProgram_GivesBackProgramPages(t *testing.T) {
	before := rssFile(t)
	n, err := trim.Program()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	if n <= 0 {
		t.Fatalf("advised %d bytes: no read-only mapping of the program found", n)
	}
	if after >= before {
		t.Fatalf("resident file-backed memory %d kB before, %d kB after: nothing given back", before, after)
	}
	t.Logf("advised %d MiB of mappings; resident file pages %d → %d kB", n>>20, before, after)
}
