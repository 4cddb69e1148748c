// Package testtask lets a test binary act as a workload: TestMain calls Run,
// and a workload whose command is the test binary with ATOLL_TESTTASK set
// behaves as that variable says instead of running tests.
package testtask

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Env is the variable that selects the behaviour:
//
//	http:PORT   serve 200 OK on 127.0.0.1:PORT until killed
//	sleep       print "ready" and block until killed
//	exit:N      exit with status N at once
//	publish:SUBJECT:N
//	            publish "0" .. "N-1" on SUBJECT to the node's broker
//	            ($ATOLL_NATS_URL), one at a time, each until the broker's
//	            outbox acknowledges it (message id pub-I, so a retry is
//	            stored once), printing "published I" every 500, then
//	            "published all", and block until killed
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
	case "publish":
		subj, count, _ := strings.Cut(arg, ":")
		n, _ := strconv.Atoi(count)
		if err := publish(os.Getenv("ATOLL_NATS_URL"), subj, n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("published all")
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, "unknown", Env, task)
	os.Exit(2)
}

// publish is the publish task: an app that must not lose a reading, across
// restarts of the agent that runs its broker.
func publish(url, subj string, n int) error {
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for i := range n {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := js.Publish(ctx, subj, []byte(strconv.Itoa(i)), jetstream.WithMsgID("pub-"+strconv.Itoa(i)))
			cancel()
			if err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond) // the broker is restarting: retry
		}
		if (i+1)%500 == 0 {
			fmt.Println("published", i+1)
		}
	}
	return nil
}
