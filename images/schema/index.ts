// Every message and enum of criu's image format, by its criu name (see registry.ts for
// which image file uses which). The DSL itself is in dsl.ts.
export * from "./inventory.js";
export * from "./core.js";
export * from "./task.js";
export * from "./core-x86.js";
export * from "./core-arch.js";
export * from "./mm.js";
export * from "./pagemap.js";
export * from "./file-common.js";
export * from "./files.js";
export * from "./files-reg.js";
export * from "./pipes.js";
export * from "./anon-files.js";
export * from "./fsnotify.js";
export * from "./tty.js";
export * from "./sockets.js";
export * from "./sk-queues.js";
export * from "./ns.js";
export * from "./net.js";
export * from "./ipc.js";
export * from "./mnt.js";
export * from "./cgroup.js";
export * from "./misc.js";
