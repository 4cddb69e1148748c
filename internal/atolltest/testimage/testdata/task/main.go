// Command task is the entrypoint of the test image: its first argument is
// a testtask behaviour (sleep, exit:N, http:PORT), or hup: print "ready",
// then "hup N" on the Nth SIGHUP, until SIGTERM.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"atoll.dev/atoll/internal/atolltest/testtask"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hup" {
		hup()
	}
	if len(os.Args) > 1 {
		os.Setenv(testtask.Env, os.Args[1])
	}
	testtask.Run()
	os.Exit(2)
}

func hup() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM)
	fmt.Println("ready")
	for n := 1; ; n++ {
		if <-sig == syscall.SIGTERM {
			os.Exit(0)
		}
		fmt.Println("hup", n)
	}
}
