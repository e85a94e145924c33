package gpu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// store stands in for docker ps: the holdings of every container made so
// far, in a file beside the lock.
type store string

func (s store) read(context.Context) ([]Holding, error) {
	b, err := os.ReadFile(string(s))
	if os.IsNotExist(err) {
		return nil, nil
	}
	var hs []Holding
	return hs, json.Unmarshal(b, &hs)
}

// deploy is one deploy as the lead's will run it: reserve, "create the
// container" (slowly, so that an unlocked second deploy would read the
// same holdings), record its labels, release.
func (s store) deploy(ctx context.Context, dir string, uid uint32, n int) error {
	inv, err := ParseQuery(fourGPUs)
	if err != nil {
		return err
	}
	a := Ask{Inventory: inv, Request: Request{Count: n}, User: User{Login: fmt.Sprint("u", uid), UID: uid}, Limits: Limits{Default: Limit{Max: 4}}}
	al, release, err := Reserve(ctx, dir, a, s.read)
	if err != nil {
		return err
	}
	defer release()
	time.Sleep(20 * time.Millisecond)
	hs, err := s.read(ctx)
	if err != nil {
		return err
	}
	for _, r := range al.Refs() {
		hs = append(hs, Holding{Ref: r, UID: uid, Container: fmt.Sprintf("c._.%d", uid)})
	}
	b, _ := json.Marshal(hs)
	tmp := string(s) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, string(s))
}

var fourGPUs = []byte("0, GPU-00000000-0000-0000-0000-000000000000, T4, 15360, [N/A], 0\n" +
	"1, GPU-11111111-1111-1111-1111-111111111111, T4, 15360, [N/A], 0\n" +
	"2, GPU-22222222-2222-2222-2222-222222222222, T4, 15360, [N/A], 0\n" +
	"3, GPU-33333333-3333-3333-3333-333333333333, T4, 15360, [N/A], 0\n")

// checkDisjoint: every GPU granted once, granted counts as asked.
func checkDisjoint(t *testing.T, s store, granted int) {
	t.Helper()
	hs, err := s.read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]uint32{}
	for _, h := range hs {
		if u, ok := by[h.UUID]; ok {
			t.Errorf("%s granted to %d and %d", h.UUID, u, h.UID)
		}
		by[h.UUID] = h.UID
	}
	if len(hs) != granted {
		t.Errorf("%d GPUs granted, want %d: %+v", len(hs), granted, hs)
	}
}

func lockDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReserveGoroutinesDisjoint(t *testing.T) {
	dir := lockDir(t)
	s := store(filepath.Join(dir, "held.json"))
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() { errs[i] = s.deploy(context.Background(), dir, uint32(1000+i), 1) })
	}
	wg.Wait()
	refused := 0
	for _, err := range errs {
		if err != nil {
			if !strings.Contains(err.Error(), RuleFree) {
				t.Error(err)
			}
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("%d refused, want 2 of 6 asking for 1 of 4", refused)
	}
	checkDisjoint(t, s, 4)
}

// Separate processes, as two root deploys are.
func TestReserveProcessesDisjoint(t *testing.T) {
	dir := lockDir(t)
	s := store(filepath.Join(dir, "held.json"))
	var cmds []*exec.Cmd
	var outs [4]bytes.Buffer
	for i := range 4 {
		c := exec.Command(os.Args[0], "-test.run=^TestReserveHelperProcess$")
		c.Env = append(os.Environ(), "DS01_GPU_LOCK_HELPER="+dir, fmt.Sprint("DS01_GPU_LOCK_UID=", 1000+i))
		c.Stdout, c.Stderr = &outs[i], &outs[i]
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("helper %d: %v\n%s", i, err, outs[i].String())
		}
	}
	checkDisjoint(t, s, 4)
}

func TestReserveHelperProcess(t *testing.T) {
	dir := os.Getenv("DS01_GPU_LOCK_HELPER")
	if dir == "" {
		t.Skip("run by TestReserveProcessesDisjoint")
	}
	var uid uint32
	fmt.Sscan(os.Getenv("DS01_GPU_LOCK_UID"), &uid)
	if err := store(filepath.Join(dir, "held.json")).deploy(context.Background(), dir, uid, 1); err != nil {
		t.Fatal(err)
	}
}

func TestLockRefusals(t *testing.T) {
	open := t.TempDir()
	os.Chmod(open, 0o777)
	link := lockDir(t)
	os.Symlink("/etc/passwd", filepath.Join(link, LockFile))
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o600)
	for dir, want := range map[string]string{
		open:                     "writable by others",
		link:                     "GPU lock " + filepath.Join(link, LockFile),
		file:                     "not a directory",
		filepath.Join(open, "x"): "no such file",
	} {
		if _, err := Lock(context.Background(), dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", dir, err, want)
		}
	}
	if os.Geteuid() != 0 {
		if _, err := Lock(context.Background(), "/"); err == nil || !strings.Contains(err.Error(), "not owned") {
			t.Errorf("/: %v", err)
		}
	}
}

func TestLockWaitsAndCancels(t *testing.T) {
	dir := lockDir(t)
	unlock, err := Lock(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Lock(ctx, dir); err == nil || !strings.Contains(err.Error(), "another deploy") {
		t.Fatalf("second lock while held: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := Lock(context.Background(), dir)
		if err == nil {
			u()
		}
		got <- err
	}()
	time.Sleep(30 * time.Millisecond)
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the lock was not taken after its release")
	}
}

func TestReserveErrors(t *testing.T) {
	dir := lockDir(t)
	inv, _ := ParseQuery(fourGPUs)
	a := Ask{Inventory: inv, Request: Request{Count: 5}, User: User{Login: "u", UID: 1}, Limits: Limits{Default: Limit{Max: Unlimited}}}
	if _, _, err := Reserve(context.Background(), dir, a, func(context.Context) ([]Holding, error) { return nil, fmt.Errorf("docker down") }); err == nil || !strings.Contains(err.Error(), "docker down") {
		t.Errorf("holdings unreadable: %v", err)
	}
	if _, _, err := Reserve(context.Background(), dir, a, store(filepath.Join(dir, "none")).read); err == nil || !strings.Contains(err.Error(), RuleFree) {
		t.Errorf("too many: %v", err)
	}
	// Neither left the lock held.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	u, err := Lock(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	u()
	if _, _, err := Reserve(context.Background(), file(t), a, nil); err == nil {
		t.Error("Reserve in a file")
	}
}

func file(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, nil, 0o600)
	return f
}
