// Package version holds the build's version string.
package version

// Version is set at link time with -ldflags "-X atoll.dev/atoll/internal/version.Version=v0.1.0".
var Version = "dev"
