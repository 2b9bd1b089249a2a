"""The lab's routes, one APIRouter per area: predict, stages (and the inspector), runs, explorer, pages."""
