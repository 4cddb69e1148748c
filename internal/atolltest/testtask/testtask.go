// Package testtask lets a test binary act as a workload: TestMain calls Run,
// and a workload whose command is the test binary with ATOLL_TESTTASK set
// behaves as that variable says instead of running tests.
package testtask

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// Env is the variable that selects the behaviour:
//
//	http:PORT   serve 200 OK on 127.0.0.1:PORT until killed
//	sleep       print "ready" and block until killed
//	exit:N      exit with status N at once
const Env = "ATOLL_TESTTASK"

// Run performs the behaviour named by $ATOLL_TESTTASK and exits; it returns
// at once when the variable is unset.
func Run() {
	task := os.Getenv(Env)
	if task == "" {
		return
	}
	kind, arg, _ := strings.Cut(task, ":")
	switch kind {
	case "http":
		ln, err := net.Listen("tcp", "127.0.0.1:"+arg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("listening on", ln.Addr())
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }))
		os.Exit(2)
	case "sleep":
		fmt.Println("ready")
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		os.Exit(0)
	case "exit":
		n, _ := strconv.Atoi(arg)
		os.Exit(n)
	}
	fmt.Fprintln(os.Stderr, "unknown", Env, task)
	os.Exit(2)
}
