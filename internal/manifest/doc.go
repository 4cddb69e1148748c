// Package manifest decodes, validates and defaults atoll.dev/v1 Workload
// manifests, reporting every problem with the path of the field at fault.
package manifest
