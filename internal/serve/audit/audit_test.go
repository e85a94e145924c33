package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestRecordLine(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	l.Record(Entry{Time: at, UID: 1722830498, PID: 4242, Login: "h.baker@hertie-school.lan", Action: "docker.container.exec",
		Target: "abc", Decision: Refuse, Rule: "exec-user", Duration: 1500 * time.Microsecond})
	want := `{"time":"2026-03-01T12:00:00Z","msg":"request","uid":1722830498,"pid":4242,"login":"h.baker@hertie-school.lan","action":"docker.container.exec","target":"abc","decision":"refuse","rule":"exec-user","duration_ms":1.5}` + "\n"
	if buf.String() != want {
		t.Errorf("got  %s\nwant %s", buf.String(), want)
	}
}

func TestOpenAppendsWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(path, []byte("{\"old\":1}\n"), 0o644)
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Record(Entry{UID: uint32(i), Action: strings.Repeat("x", 3000), Decision: Allow})
		}()
	}
	wg.Wait()
	l.Close()
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	f, _ := os.Open(path)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v", n, err)
		}
		n++
	}
	if n != 51 {
		t.Errorf("%d lines, want 51 (the old one kept)", n)
	}
}

func TestOpenRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string
		want  string
	}{
		{"final symlink", func(t *testing.T, dir string) string {
			target := filepath.Join(dir, "shadow")
			os.WriteFile(target, nil, 0o600)
			os.Symlink(target, filepath.Join(dir, "audit.log"))
			return filepath.Join(dir, "audit.log")
		}, "symbolic link"},
		{"symlinked parent", func(t *testing.T, dir string) string {
			os.Mkdir(filepath.Join(dir, "real"), 0o700)
			os.Symlink("real", filepath.Join(dir, "log"))
			return filepath.Join(dir, "log", "audit.log")
		}, "symbolic link"},
		{"hard link", func(t *testing.T, dir string) string {
			target := filepath.Join(dir, "other")
			os.WriteFile(target, nil, 0o600)
			os.Link(target, filepath.Join(dir, "audit.log"))
			return filepath.Join(dir, "audit.log")
		}, "hard links"},
		{"fifo", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.log")
			syscall.Mkfifo(p, 0o600)
			return p
		}, "audit log"},
		{"directory", func(t *testing.T, dir string) string { return dir }, "audit log"},
		{"someone else's", func(t *testing.T, dir string) string {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			p := filepath.Join(dir, "audit.log")
			os.WriteFile(p, nil, 0o600)
			os.Chown(p, 4242, 4242)
			return p
		}, "owned by UID 4242"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t, t.TempDir())
			l, err := Open(path)
			if err == nil {
				l.Close()
				t.Fatalf("Open(%s) succeeded", path)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %q", err, tt.want)
			}
		})
	}
}
