// Text limits the server counts in bytes of UTF-8, not in characters (a Hebrew
// letter is two bytes): shared by the forms that check them before sending.

export function utf8Bytes(s: string): number {
  return new TextEncoder().encode(s).length;
}

/** POST .../carts/{id}/maintenance: the note's limit (MAINT_NOTE_MAX in src/cloud/cw_cloud_api.c). */
export const MAINT_NOTE_MAX_BYTES = 200;

/** Whether a maintenance note, as sent (trimmed), is over the server's limit. */
export function maintNoteTooLong(note: string): boolean {
  return utf8Bytes(note.trim()) > MAINT_NOTE_MAX_BYTES;
}
