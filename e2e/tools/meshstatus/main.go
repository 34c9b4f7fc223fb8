// meshstatus reads Kubernetes objects as JSON (one object or a List, as `kubectl get -o json`
// prints them) on standard input and prints, one JSON line per object, how the GitOps tools see
// it: its kstatus (sigs.k8s.io/cli-utils, what Flux's `wait` and kstatus-based tools compute) and,
// with --argocd-health FILE, the Argo CD health that Lua script gives (run in gopher-lua, the Lua
// Argo CD runs, with the object converted to Lua values as Argo CD converts it).
//
// Objects are decoded with the Kubernetes JSON decoder, so integers stay integers as they are in
// the tools themselves (a YAML decode into a map would make them floats and change the answers).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type report struct {
	Kind           string  `json:"kind"`
	Namespace      string  `json:"namespace,omitempty"`
	Name           string  `json:"name"`
	Generation     int64   `json:"generation"`
	KStatus        string  `json:"kstatus"`
	KStatusMessage string  `json:"kstatusMessage"`
	ArgoCD         *health `json:"argocd,omitempty"`
}

type health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	script := flag.String("argocd-health", "", "an Argo CD health check (Lua) to run on each object")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, *script); err != nil {
		fmt.Fprintln(os.Stderr, "meshstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer, script string) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading standard input: %w", err)
	}
	objects, err := decode(data)
	if err != nil {
		return err
	}
	var source string
	if script != "" {
		bytes, err := os.ReadFile(script)
		if err != nil {
			return fmt.Errorf("reading %s: %w", script, err)
		}
		source = string(bytes)
	}
	encoder := json.NewEncoder(out)
	for _, object := range objects {
		result, err := status.Compute(object)
		if err != nil {
			return fmt.Errorf("kstatus of %s %s: %w", object.GetKind(), object.GetName(), err)
		}
		r := report{
			Kind: object.GetKind(), Namespace: object.GetNamespace(), Name: object.GetName(),
			Generation: object.GetGeneration(), KStatus: result.Status.String(), KStatusMessage: result.Message,
		}
		if source != "" {
			h, err := argoHealth(source, object.Object)
			if err != nil {
				return fmt.Errorf("Argo CD health of %s %s: %w", object.GetKind(), object.GetName(), err)
			}
			r.ArgoCD = h
		}
		if err := encoder.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

func decode(data []byte) ([]*unstructured.Unstructured, error) {
	object := &unstructured.Unstructured{}
	if err := object.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("decoding the objects: %w", err)
	}
	if !object.IsList() {
		return []*unstructured.Unstructured{object}, nil
	}
	list, err := object.ToList()
	if err != nil {
		return nil, fmt.Errorf("decoding the list: %w", err)
	}
	objects := make([]*unstructured.Unstructured, 0, len(list.Items))
	for i := range list.Items {
		objects = append(objects, &list.Items[i])
	}
	return objects, nil
}

// argoHealth runs a health script as Argo CD does: the object as the global `obj`, the script's
// return value a table with `status` and `message`.
func argoHealth(source string, object map[string]any) (*health, error) {
	state := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer state.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		state.Push(state.NewFunction(lib.open))
		state.Push(lua.LString(lib.name))
		state.Call(1, 0)
	}
	state.SetGlobal("obj", toLua(state, object))
	if err := state.DoString(source); err != nil {
		return nil, err
	}
	table, ok := state.Get(-1).(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("the script returned %s, not a table", state.Get(-1).Type())
	}
	return &health{
		Status:  lua.LVAsString(table.RawGetString("status")),
		Message: lua.LVAsString(table.RawGetString("message")),
	}, nil
}

// toLua converts a decoded object into Lua values the way Argo CD's util/lua decodeValue does.
func toLua(state *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case []any:
		array := state.CreateTable(len(v), 0)
		for _, item := range v {
			array.Append(toLua(state, item))
		}
		return array
	case map[string]any:
		table := state.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(state, item))
		}
		return table
	}
	return lua.LNil
}
