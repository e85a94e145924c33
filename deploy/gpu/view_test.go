package gpu

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func viewFixture(t *testing.T) (Inventory, []Holding) {
	inv := recorded(t, "h100-mig")
	since := time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)
	hold := func(idx, login string, uid uint32, c string) Holding {
		d, _ := inv.Find(idx)
		return Holding{Ref: Ref{Index: d.Index, UUID: d.UUID}, Login: login, UID: uid, Container: c, ContainerID: c + "-id", Since: since, State: "running"}
	}
	return inv, []Holding{
		hold("0:1", "alice", 1001, "train._.1001"),
		hold("1", "bob\x1b[2J", 1002, "eval._.1002"),
		hold("1", "carol", 1003, "dup._.1003"),
		{Ref: Ref{Index: "7", UUID: "GPU-77777777-7777-7777-7777-777777777777"}, Login: "dave", UID: 1004, Container: "gone._.1004", Since: since},
	}
}

func TestViewGolden(t *testing.T) {
	inv, held := viewFixture(t)
	rows := View(inv, held)
	var states []string
	for _, r := range rows {
		states = append(states, r.Index+"="+r.State)
	}
	if got := strings.Join(states, " "); got != "0=mig 0:0=free 0:1=held 0:2=free 0:3=free 1=held 1=held 2=mig 2:0=free 2:1=free 2:2=free 3=free 7=gone" {
		t.Errorf("states: %s", got)
	}
	var table, js bytes.Buffer
	if err := WriteTable(&table, inv, rows); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, inv, rows); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(table.String(), "\x1b") {
		t.Error("an escape sequence reached the table")
	}
	for name, got := range map[string][]byte{"view.table": table.Bytes(), "view.golden.json": js.Bytes()} {
		golden := filepath.Join("testdata", name)
		if *update {
			os.WriteFile(golden, got, 0o644)
		}
		want, err := os.ReadFile(golden)
		if err != nil || !bytes.Equal(want, got) {
			t.Errorf("%s differs (%v):\n%s", golden, err, got)
		}
	}
	var back struct{ GPUs []Row }
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.GPUs) != len(rows) || *back.GPUs[2].UID != 1001 {
		t.Errorf("JSON: %v %+v", err, back)
	}
}

func TestViewEmpty(t *testing.T) {
	var table, js bytes.Buffer
	inv := Inventory{NoGPUs: "no NVIDIA stack: nvidia-smi not found"}
	WriteTable(&table, inv, View(inv, nil))
	WriteJSON(&js, inv, View(inv, nil))
	if table.String() != "no GPUs: no NVIDIA stack: nvidia-smi not found\n" {
		t.Errorf("table %q", table.String())
	}
	if !strings.Contains(js.String(), `"gpus": []`) || !strings.Contains(js.String(), `"no_gpus": "no NVIDIA stack`) {
		t.Errorf("json %s", js.String())
	}
	lost := recorded(t, "v100-lost")
	table.Reset()
	WriteTable(&table, lost, View(lost, nil))
	for _, want := range []string{"error (Unable to determine", "error (utilization.gpu: ERR!)", "warning: WARNING: infoROM", "64%", "32 GiB"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}
