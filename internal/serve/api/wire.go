// Package api is ds01's own API on the service's socket: each operation
// of internal/ops is a POST of its request to /ds01/v1/OPERATION, the
// caller known from the kernel alone, with progress and then the result
// streamed back as JSON lines. Server answers it; Client is the same
// operations seen from the CLI, so that direct use and use through the
// service render the same results the same way.
package api

import (
	"encoding/json"

	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/registry"
)

// Prefix is where ds01's API lives on the socket; everything else there
// is the Docker-compatible subset.
const Prefix = "/ds01/v1/"

// call is the body of every request.
type call struct {
	// As is root's --user/--uid/--gid; from anyone else it is refused.
	As identity.Overrides `json:"as"`
	// Verbose asks for the -v log lines.
	Verbose bool            `json:"verbose,omitempty"`
	Request json.RawMessage `json:"request"`
}

// message is one line of a response: an event, or at the end the result
// or the error.
type message struct {
	Log      string              `json:"log,omitempty"`
	Out      string              `json:"out,omitempty"`
	Warn     string              `json:"warn,omitempty"`
	Waiting  string              `json:"waiting,omitempty"`
	Progress *[2]int64           `json:"progress,omitempty"`
	Pull     *registry.PullEvent `json:"pull,omitempty"`
	Result   json.RawMessage     `json:"result,omitempty"`
	Error    *Error              `json:"error,omitempty"`
}

// Error is an operation's failure as the service reports it: the message
// the CLI prints and the exit code it exits with.
type Error struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
}

func (e *Error) Error() string { return e.Message }

// ExitCode makes an Error exit the CLI as the operation would directly.
func (e *Error) ExitCode() int { return e.Code }
