//go:build wasip1

// Command sensor is an example atoll WASM workload: a WASI preview 1 module
// that prints a fake sensor reading to stdout at a fixed interval.
//
// It is configured through the environment:
//
//	SENSOR        name printed with each reading (default "sensor0")
//	INTERVAL      time between readings as a Go duration (default "1s")
//	EXIT_AFTER_N  if set to N > 0, exit after printing N readings
//	EXIT_CODE     exit status used with EXIT_AFTER_N (default 0)
//	BALLAST_MB    if set, allocate and touch this many MiB at start (for
//	              exercising memory limits)
//
// Build it with:
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags='-s -w' -o examples/wasm/sensor.wasm ./examples/wasm/sensor
package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"time"
)

// ballast keeps BALLAST_MB alive for the life of the module.
var ballast []byte

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "sensor: %v\n", err)
		os.Exit(2)
	}
}

func run() error {
	name := os.Getenv("SENSOR")
	if name == "" {
		name = "sensor0"
	}
	interval := time.Second
	if v := os.Getenv("INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("parse INTERVAL %q: must be a positive Go duration", v)
		}
		interval = d
	}
	exitAfter, err := intEnv("EXIT_AFTER_N", 0)
	if err != nil {
		return err
	}
	exitCode, err := intEnv("EXIT_CODE", 0)
	if err != nil {
		return err
	}

	ballastMB, err := intEnv("BALLAST_MB", 0)
	if err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "sensor %s: starting, interval %s, argv %q\n", name, interval, os.Args)
	if ballastMB > 0 {
		ballast = make([]byte, ballastMB<<20)
		for i := 0; i < len(ballast); i += 4096 {
			ballast[i] = byte(i >> 12)
		}
		fmt.Fprintf(os.Stderr, "sensor %s: holding %d MiB ballast\n", name, ballastMB)
	}
	for n := 1; ; n++ {
		// A slow sine wave around 21.5 °C, so readings look plausible.
		celsius := 21.5 + 3*math.Sin(float64(n)/10)
		fmt.Printf("%s sensor=%s seq=%d celsius=%.2f\n",
			time.Now().UTC().Format(time.RFC3339Nano), name, n, celsius)
		if exitAfter > 0 && n >= exitAfter {
			fmt.Fprintf(os.Stderr, "sensor %s: %d readings done, exiting with %d\n", name, n, exitCode)
			os.Exit(exitCode)
		}
		time.Sleep(interval)
	}
}

func intEnv(key string, def int) (int, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("parse %s %q: must be a non-negative integer", key, v)
	}
	return n, nil
}
