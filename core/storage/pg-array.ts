/**
 * Postgres array literals, for passing a column of many rows as one parameter (`unnest`).
 * node-postgres quotes every element and escapes it with two regular expressions; for a
 * thousand samples that cost more than Postgres's insert of them. Here an element that needs
 * no quoting (a number, an id, an instant, a unit) goes as it is; any other is quoted.
 */
const bare = /^[A-Za-z0-9_.:+-]+$/
const nullWord = /^null$/i

export type ArrayElement = string | number | boolean | null | undefined

/** `{a,b,NULL}`: the literal of `values`, cast in SQL to the column's array type. */
export const arrayLiteral = (values: ReadonlyArray<ArrayElement>): string => {
  let out = "{"
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ","
    const value = values[i]
    if (value === null || value === undefined) out += "NULL"
    else if (typeof value !== "string") out += String(value)
    else if (bare.test(value) && !nullWord.test(value)) out += value
    else out += `"${value.replace(/[\\"]/g, "\\$&")}"`
  }
  return out + "}"
}
