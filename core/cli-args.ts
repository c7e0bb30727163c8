/**
 * Strict command-line parsing shared by the CLI and plugins' commands (@effect/cli is not
 * installed): anything not understood is a usage error, so a typo never runs a command with
 * defaults. Messages quote an argument only as `shown` prints it: printable and short.
 */
import { Either } from "effect"

/** An argument as an error message may show it. */
export const shown = (arg: string) => {
  const printable = arg.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?")
  return `'${printable.length > 40 ? `${printable.slice(0, 40)}…` : printable}'`
}

export const isHelp = (arg: string) => arg === "--help" || arg === "-h"

export interface Flags {
  readonly values: Map<string, string>
  readonly switches: Set<string>
}

/**
 * `--name value`, `--name=value` and `--switch`, each at most once; anything else is a usage
 * error. A value may not look like an option (`--user --json` lacks the user).
 */
export const parseFlags = (
  args: ReadonlyArray<string>,
  spec: { readonly values: Readonly<Record<string, string>>; readonly switches: ReadonlyArray<string> }
): Either.Either<Flags, string> => {
  const values = new Map<string, string>()
  const switches = new Set<string>()
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    const [, name, inline] = /^--([a-z0-9-]+)(?:=(.*))?$/s.exec(arg) ?? []
    if (name !== undefined && spec.switches.includes(name) && inline === undefined) {
      if (switches.has(name)) return Either.left(`--${name} is given twice`)
      switches.add(name)
      continue
    }
    if (name !== undefined && Object.hasOwn(spec.values, name)) {
      if (values.has(name)) return Either.left(`--${name} is given twice`)
      const value = inline ?? args[++i]
      if (value === undefined || value === "" || (inline === undefined && value.startsWith("-"))) return Either.left(`--${name} needs ${spec.values[name]}`)
      values.set(name, value)
      continue
    }
    return Either.left(arg.startsWith("-") ? `unknown option ${shown(arg)}` : `unexpected argument ${shown(arg)}`)
  }
  return Either.right({ values, switches })
}

/** A whole number from `min` to `max` given to `--name`. */
export const parseWholeNumber = (name: string, value: string, min: number, max: number): Either.Either<number, string> => {
  const n = /^\d{1,6}$/.test(value) ? Number(value) : Number.NaN
  return n >= min && n <= max ? Either.right(n) : Either.left(`--${name} must be a whole number from ${min} to ${max}, not ${shown(value)}`)
}
