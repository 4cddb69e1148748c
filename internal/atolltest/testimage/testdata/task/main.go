// Command task is the entrypoint of the test image: its first argument is
// a testtask behaviour (sleep, exit:N, http:PORT).
package main

import (
	"os"

	"atoll.dev/atoll/internal/atolltest/testtask"
)

func main() {
	if len(os.Args) > 1 {
		os.Setenv(testtask.Env, os.Args[1])
	}
	testtask.Run()
	os.Exit(2)
}
