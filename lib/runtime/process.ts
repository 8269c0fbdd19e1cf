/** Whether another process is still there, for locks and temporaries left by a killed one. */
import process from "node:process";

/** Whether a process with this id exists (signal 0; EPERM means it exists under another user). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
}
