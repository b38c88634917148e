/**
 * Checks on raw log text. `JSON.parse` keeps the last of two equal keys, so a line printed with
 * `"component":"chain","component":"anvil"` parses fine: duplicates must be found in the text itself.
 */

/** The keys that appear more than once in one object of a JSON text (any depth), in order found. */
export function duplicateKeys(text: string): string[] {
  const dups: string[] = [];
  // One entry per open container: the keys seen so far for an object, null for an array.
  const open: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = open[open.length - 1];
      if (top && expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.has(key)) dups.push(key);
        top.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === '{') {
      open.push(new Set());
      expectKey = true;
    } else if (c === '[') {
      open.push(null);
      expectKey = false;
    } else if (c === '}' || c === ']') {
      open.pop();
    } else if (c === ',') {
      expectKey = open[open.length - 1] != null;
    }
  }
  return dups;
}

/** The JSON log lines of a text (lines starting with `{"level"`), other lines (a banner) skipped. */
export function jsonLogLines(text: string): string[] {
  return text.split('\n').filter((l) => l.startsWith('{"level"'));
}

/** `line: key, key` for each line of `lines` that repeats a key; empty when every line is clean. */
export function linesWithDuplicateKeys(lines: string[]): string[] {
  const out: string[] = [];
  for (const line of lines) {
    const d = duplicateKeys(line);
    if (d.length > 0) out.push(`${d.join(', ')} in ${line.slice(0, 200)}`);
  }
  return out;
}
