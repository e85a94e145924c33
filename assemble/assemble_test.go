package assemble

import (
	"archive/tar"
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/passwd"

	"github.com/ds01/ds01/assemble/label"
)

func TestSourceDateEpoch(t *testing.T) {
	for _, tc := range []struct {
		v       string
		want    time.Time
		wantErr bool
	}{
		{"", time.Time{}, false},
		{"1700000000", time.Unix(1700000000, 0).UTC(), false},
		{"0", time.Unix(0, 0).UTC(), false},
		{"1700000000.5", time.Time{}, true},
		{"-1", time.Time{}, true},
		{"yesterday", time.Time{}, true},
		{" 1700000000", time.Time{}, true},
	} {
		got, err := SourceDateEpoch(func(string) string { return tc.v })
		if (err != nil) != tc.wantErr || !got.Equal(tc.want) {
			t.Errorf("SOURCE_DATE_EPOCH=%q: %v, %v", tc.v, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
			t.Errorf("error does not name the variable: %v", err)
		}
	}
}

func testBase(t *testing.T) v1.Image {
	t.Helper()
	var b bytes.Buffer
	at := time.Unix(1650000000, 0)
	if err := layers.Write(&b, []layers.Entry{
		{Path: "etc", Type: tar.TypeDir, Mode: 0o755, ModTime: at},
		{Path: "etc/passwd", Type: tar.TypeReg, Mode: 0o644, ModTime: at, Data: []byte("root:x:0:0:root:/root:/bin/bash\n")},
		{Path: "etc/group", Type: tar.TypeReg, Mode: 0o644, ModTime: at, Data: []byte("root:x:0:\nsudo:x:27:\n")},
	}); err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layers.FromBytes(b.Bytes())})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.Created = v1.Time{Time: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Config.Labels = map[string]string{"com.nvidia.cuda.version": "12.4", label.AIMEUsername: "stale"}
	cfg.Config.Env = []string{"PATH=/opt/conda/bin:/usr/bin", "CUDA_HOME=/usr/local/cuda"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

var alice = passwd.Account{Name: "alice", UID: 1722830498, GID: 1722830498, Groups: []string{"sudo", "video"}}

func build(t *testing.T, base v1.Image, opts Options) Result {
	t.Helper()
	files, err := Files(base)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Image(base, files, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestImage(t *testing.T) {
	base := testBase(t)
	res := build(t, base, Options{Account: alice, Labels: map[string]string{"ds01.project": "p"}})
	if err := validate.Image(res.Image, validate.Fast); err != nil {
		t.Fatalf("invalid image: %v", err)
	}
	// Determinism: again, and the ID does not move.
	again := build(t, base, Options{Account: alice, Labels: map[string]string{"ds01.project": "p"}})
	id1, _ := res.Image.ConfigName()
	id2, _ := again.Image.ConfigName()
	if id1 != id2 {
		t.Fatalf("same inputs, different image IDs: %s %s", id1, id2)
	}
	bl, _ := base.Layers()
	ls, _ := res.Image.Layers()
	if len(ls) != len(bl)+1 {
		t.Fatalf("%d layers on a %d-layer base; want exactly one more", len(ls), len(bl))
	}
	cfg, _ := res.Image.ConfigFile()
	c := cfg.Config
	for k, want := range map[string]string{
		"com.nvidia.cuda.version": "12.4", label.AIMEHasUserSetup: "true", label.AIMEUserID: "1722830498",
		label.AIMEGroupID: "1722830498", label.AIMEUsername: "alice", "ds01.project": "p",
	} {
		if c.Labels[k] != want {
			t.Errorf("label %s = %q; want %q", k, c.Labels[k], want)
		}
	}
	if c.User != "1722830498" || c.WorkingDir != "/workspace" || !slices.Equal(c.Cmd, []string{"bash", "-l"}) {
		t.Errorf("User %q WorkingDir %q", c.User, c.WorkingDir)
	}
	if want := append([]string{"PATH=/home/alice/.local/bin:/opt/conda/bin:/usr/bin", "CUDA_HOME=/usr/local/cuda"}, DefaultEnv...); !slices.Equal(c.Env, want) {
		t.Errorf("Env = %q; want %q", c.Env, want)
	}
	if !cfg.Created.Time.Equal(time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Created = %v; want the base's", cfg.Created)
	}
	if h := cfg.History[len(cfg.History)-1]; !strings.Contains(h.CreatedBy, "ds01: user alice (1722830498:1722830498)") {
		t.Errorf("last history entry %+v", h)
	}
	// The label records the manifest's layer descriptors, the user layer's
	// last, and reads back as them.
	m, _ := res.Image.Manifest()
	descs, err := label.ParseLayersRecord(c.Labels[label.Layers], len(ls))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range descs {
		if d.Digest != m.Layers[i].Digest || d.Size != m.Layers[i].Size || d.MediaType != m.Layers[i].MediaType {
			t.Errorf("label layer %d = %+v; manifest has %+v", i, d, m.Layers[i])
		}
	}
	if _, err := label.ParseLayersRecord(c.Labels[label.Layers], len(ls)+1); err == nil {
		t.Error("a record for one layer fewer than the image has was accepted")
	}
	// --env overrides the defaults and the base's.
	withEnv := build(t, base, Options{Account: alice, Env: []string{"HF_HOME=/data/hf", "CUDA_HOME=/opt/cuda"}})
	wcfg, _ := withEnv.Image.ConfigFile()
	if !slices.Contains(wcfg.Config.Env, "HF_HOME=/data/hf") || !slices.Contains(wcfg.Config.Env, "CUDA_HOME=/opt/cuda") || slices.Contains(wcfg.Config.Env, "HF_HOME=/workspace/.cache/huggingface") {
		t.Errorf("--env: %v", wcfg.Config.Env)
	}
	// SOURCE_DATE_EPOCH moves the time, and with it the ID.
	other := build(t, base, Options{Account: alice, Created: time.Unix(1700000000, 0), Labels: map[string]string{"ds01.project": "p"}})
	if id3, _ := other.Image.ConfigName(); id3 == id1 {
		t.Error("a different creation time gave the same image ID")
	}
}

func TestImageRefusesRoot(t *testing.T) {
	base := testBase(t)
	files, err := Files(base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Image(base, files, Options{Account: passwd.Account{Name: "x", UID: 0, GID: 0}}); err == nil || !strings.Contains(err.Error(), "ID 0") {
		t.Fatalf("err = %v", err)
	}
}
