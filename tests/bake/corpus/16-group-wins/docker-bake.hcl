# "release" is both a group and a target: the group wins
group "release" {
  targets = ["one", "two"]
}
target "release" { tags = ["never/selected"] }
target "one" { tags = ["acme/one"] }
target "two" { tags = ["acme/two"] }
