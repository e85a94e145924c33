// Package audit writes the service's audit log: one JSON line per request
// it decided (who, what, on what, allowed or refused, by which rule, how
// long it took), appended to a root-owned file that no link can redirect.
package audit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Decisions an Entry records.
const (
	Allow  = "allow"
	Refuse = "refuse"
	Error  = "error" // allowed, but the daemon or the service failed it
)

// Entry is one request as the service decided it.
type Entry struct {
	Time     time.Time
	UID      uint32
	PID      int32
	Login    string
	Action   string // e.g. docker.container.logs, ds01.image.create
	Target   string // a container, an image, a path; "" when none
	Decision string // Allow, Refuse or Error
	Rule     string // the rule that decided
	Duration time.Duration
}

// Log is an audit log; safe for concurrent use (each entry is one
// write(2) of one line to a file opened O_APPEND).
type Log struct {
	h slog.Handler
	c io.Closer
}

// New writes entries to w.
func New(w io.Writer) *Log {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.LevelKey {
			return slog.Attr{} // every line is the same level
		}
		return a
	}})
	return &Log{h: h}
}

// Open appends to the file at path, made 0600 if missing. No component of
// path may be a symbolic link (a link planted in the log's directory
// would send root's appends into another file), and the file must be a
// regular file owned by this process's user with one link; group and
// other permissions are taken away.
func Open(path string) (*Log, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_APPEND | unix.O_CREAT | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK,
		Mode:    0o600,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		if err == unix.ELOOP {
			return nil, fmt.Errorf("audit log %s: a component of the path is a symbolic link, which the audit log never follows; name the real path", path)
		}
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if err := checkFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	l := New(f)
	l.c = f
	return l, nil
}

func checkFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
	case st.Uid != uint32(os.Geteuid()):
		return fmt.Errorf("owned by UID %d, not the service's %d: the audit log is the service's alone", st.Uid, os.Geteuid())
	case st.Nlink != 1:
		return fmt.Errorf("has %d hard links: another name for it could be another file's", st.Nlink)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return f.Chmod(0o600)
	}
	return nil
}

// Record writes e (Time defaults to now).
func (l *Log) Record(e Entry) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	r := slog.NewRecord(e.Time, slog.LevelInfo, "request", 0)
	r.AddAttrs(
		slog.Uint64("uid", uint64(e.UID)),
		slog.Int64("pid", int64(e.PID)),
		slog.String("login", e.Login),
		slog.String("action", e.Action),
		slog.String("target", e.Target),
		slog.String("decision", e.Decision),
		slog.String("rule", e.Rule),
		slog.Float64("duration_ms", float64(e.Duration.Microseconds())/1000),
	)
	l.h.Handle(context.Background(), r)
}

// Close closes the file Open opened.
func (l *Log) Close() error {
	if l.c == nil {
		return nil
	}
	return l.c.Close()
}
