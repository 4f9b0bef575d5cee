// Two criu messages contain themselves (cgroup_dir_entry.children, aa_namespace.namespaces).
// message() resolves field types eagerly and schemas must not use thunks, so such a field
// is first declared with an empty stand-in of the same name and pointed back at the real
// message once that exists. The runtime walk (FieldInfo.message, fields[name].type) then
// sees the real recursion; the inferred TypeScript type of the field stays one level
// shallow (entries of the nested level type as {}).
import type { FieldType, MessageDef } from "./dsl.js";

export function closeLoop(msg: MessageDef, field: string): void {
  const info = msg.byName.get(field);
  const spec = msg.fields[field];
  if (info === undefined || spec === undefined || info.kind !== "message" || info.message?.name !== msg.name) {
    throw new Error(`schema ${msg.name}: ${field} is not a self-reference stand-in`);
  }
  // FieldInfo and FieldSpec are plain objects built by message()/rep(); they are readonly
  // only in their types. ordered, byNo and byName share the one FieldInfo object.
  (info as { message: MessageDef | undefined }).message = msg;
  (spec as { type: FieldType }).type = msg;
}
