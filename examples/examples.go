// Package examples embeds the example manifests and the WASM module they
// use, so `atoll dev` can apply them on a machine that has only the binary.
package examples

import "embed"

// FS holds exec/, priority/, telemetry/ and wasm/ (manifests and sensor.wasm).
//
//go:embed exec/*.yaml priority/*.yaml secrets/*.yaml telemetry/*.yaml wasm/sensor.yaml wasm/sensor.wasm
var FS embed.FS
