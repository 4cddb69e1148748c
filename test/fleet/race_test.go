//go:build race

package fleet_test

func init() { raceEnabled = true }
