//go:build tools

// Package tools pins the commands built from this module so that
// `go mod tidy` keeps their requirements.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
